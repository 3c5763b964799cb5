// libpg_query: PostgreSQL's own parser as a C library (Debian: libpg-query-dev, a static
// library without a pkg-config file, hence no pkgConfig in Package.swift).
#include <pg_query.h>
