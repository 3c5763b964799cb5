// Compiled by the host compiler so that CBordergateABI is a real module; the checks pin the
// layouts the BPF programs rely on, so a change that shifts a field fails the Swift build too.
#include "bordergate_abi.h"
#include <stddef.h>

_Static_assert(sizeof(struct bg_endpoint) == 24, "bg_endpoint layout");
_Static_assert(sizeof(struct bg_identity) == 56, "bg_identity layout");
_Static_assert(sizeof(struct bg_tuple_key) == 24, "bg_tuple_key layout");
_Static_assert(offsetof(struct bg_connect_event, exe) == 120, "bg_connect_event layout");
_Static_assert(sizeof(struct bg_orig) == 104, "bg_orig layout");
_Static_assert(sizeof(struct bg_policy_row) == 8, "bg_policy_row layout");
_Static_assert(sizeof(struct bg_lpm4_key) == 8, "bg_lpm4_key layout");
_Static_assert(sizeof(struct bg_lpm6_key) == 20, "bg_lpm6_key layout");
_Static_assert(sizeof(struct bg_cgroup_policy) == 24, "bg_cgroup_policy layout");
_Static_assert(sizeof(struct bg_config) == 32, "bg_config layout");
_Static_assert(offsetof(struct bg_config, reserved_port) == 6, "bg_config layout");
_Static_assert(sizeof(struct bg_proxy_netns) == 8, "bg_proxy_netns layout");
_Static_assert(offsetof(struct bg_proc, exe_ino) == 24 && offsetof(struct bg_proc, exe) == 32, "bg_proc layout");
_Static_assert(sizeof(struct bg_refusal_key) == 40 && offsetof(struct bg_refusal_key, port) == 36, "bg_refusal_key layout");
_Static_assert(sizeof(struct bg_refusal_count) == 32, "bg_refusal_count layout");
_Static_assert(sizeof(struct bg_refusal_budget_key) == 16, "bg_refusal_budget_key layout");
_Static_assert(sizeof(struct bg_refusal_budget) == 32, "bg_refusal_budget layout");
_Static_assert(sizeof(struct bg_proxy_limits) == 8, "bg_proxy_limits layout");
_Static_assert(sizeof(struct bg_live_key) == 16, "bg_live_key layout");
