#ifndef BORDERGATE_SYS_H
#define BORDERGATE_SYS_H

#include <sys/types.h>
#include <sys/mount.h>
#include <sys/vfs.h>

/// Starts `path` with `argv` and `envp` as a child that is a member of the cgroup open at
/// `cgroup_fd` from its first instruction (clone3 with CLONE_INTO_CGROUP), so nothing it runs can
/// escape the guard. Returns the child's pid, or -1 with errno set; if the child could not exec,
/// returns -1 with the exec's errno. `nofile_soft`, unless 0, is the soft open-file limit the child
/// gets (the caller may have raised its own for the proxy).
pid_t bg_spawn_in_cgroup(int cgroup_fd, const char *path, char *const argv[], char *const envp[],
                         unsigned long nofile_soft);

#endif
