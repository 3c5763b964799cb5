/*
 * The kernel <-> user-space contract of Bordergate.
 *
 * Every struct and constant shared by the BPF programs (bpf/bordergate.bpf.c) and the Swift host
 * (through the CBordergateABI module) is defined here and nowhere else. Layouts use fixed-width
 * types with explicit padding so the BPF target and the host agree byte for byte.
 *
 * Addresses are always 16 bytes: IPv4 is stored IPv4-mapped (::ffff:a.b.c.d) so one key type
 * serves both families. Ports are in host byte order.
 */
#ifndef BORDERGATE_ABI_H
#define BORDERGATE_ABI_H

#include <linux/types.h>

#define BG_COMM_LEN 16
#define BG_EXE_LEN 256
#define BG_MAX_CGROUP_DEPTH 32
/* Buckets of `proc_gen` (a power of two): process ids share a bucket modulo this. */
#define BG_PROC_GEN_BUCKETS 4096

/* Residency: the region tables are compiled into LPM tries whose values are region classes; each
 * compiled policy is a row of verdicts per class. Class 0 means "no table knows this address". */
#define BG_MAX_CLASSES 2048
#define BG_MAX_POLICY_SLOTS 128
#define BG_CLASS_UNKNOWN 0

/* Kernel verdicts for one connect(). */
enum bg_verdict {
    BG_VERDICT_NONE = 0,
    BG_VERDICT_REDIRECT = 1, /* destination rewritten to the proxy */
    BG_VERDICT_PASS = 2,     /* goes direct */
    BG_VERDICT_DENY = 3,     /* connect() fails with EPERM */
};

/* Why the kernel reached its verdict. */
enum bg_reason {
    BG_REASON_NONE = 0,
    /* 1 was "guarded": every verdict now comes from a compiled policy */
    BG_REASON_NO_PROXY = 2,        /* no proxy was ever configured: fail closed */
    BG_REASON_NO_POLICY = 3,       /* guarded programs ran but no policy entry matched: fail closed */
    BG_REASON_POLICY = 4,          /* the cgroup's compiled policy decided (rule in the event) */
    BG_REASON_NO_STATE = 5,        /* a redirect's socket state could not be stored (out of memory):
                                      the proxy could not place it, so refused (fail closed) */
    BG_REASON_OTHER_NETNS = 6,     /* a redirect of a socket in another network namespace than the
                                      proxy's: its 127.0.0.1 is not Bordergate (fail closed) */
    BG_REASON_NOT_PROXY = 7,       /* what listens on the proxy's port is not the proxy's socket (it
                                      lacks the proxy's mark): a squatter (fail closed) */
    BG_REASON_PROXY_LIMIT = 8,     /* the cgroup or the user already holds as many proxied
                                      connections as `proxy_limits` allows */
    BG_REASON_AUDIT_BLOCKED = 9,   /* the daemon cannot write its audit log (disk full): nothing
                                      unrecorded may leave (fail closed) */
};

enum bg_event_kind {
    BG_EVENT_CONNECT = 1,
};

/* Per-CPU counters in the `stats` map, indexed by this enum. */
enum bg_stat {
    BG_STAT_CONNECT_SEEN = 0,
    BG_STAT_REDIRECTED = 1,
    BG_STAT_PASSED = 2,
    BG_STAT_DENIED = 3,
    BG_STAT_EVENTS_DROPPED = 4,  /* ring buffer full */
    BG_STAT_ESTABLISHED_MAPPED = 5,
    BG_STAT_LOOP_GUARD = 6,      /* the proxy's own connects, left alone */
    BG_STAT_UDP_CHECKED = 7,     /* UDP connects and unconnected sends that met a policy */
    BG_STAT_UDP_DENIED = 8,
    BG_STAT_AUDITED = 9,         /* would have been refused; the policy is in audit mode */
    BG_STAT_SOCKETS_REFUSED = 10, /* sockets the verdict hooks cannot see (raw, SCTP, packet, XDP,
                                     vsock), binds of the proxy port, source-route options */
    BG_STAT_MAX = 11,
};

/* Policy flags in bg_config.flags. */
#define BG_CONFIG_FLAG_READY 1u /* a proxy port is set */
#define BG_CONFIG_FLAG_AUDIT_BLOCKED 2u /* the audit log cannot be written: every verdict that would
                                           let a recorded connection out becomes DENY until it can */

/* Single entry of the `config` array map; written by the daemon, read by every program. */
struct bg_config {
    __u32 proxy_tgid;   /* loop guard: connects of this process ... */
    __u16 proxy_port;   /* where redirected connects go, on 127.0.0.1 and ::1 */
    __u16 reserved_port; /* no guarded process may bind it: the proxy's port, kept while no daemon
                            runs (proxy_port is 0 then), so nobody can take it from the next one */
    __u32 flags;
    __u32 proxy_mark;   /* ... on sockets with this SO_MARK are never redirected. Both must match:
                           a killed daemon's pid may be reused by a guarded process, and setting
                           a mark needs CAP_NET_ADMIN. */
    __u64 table_fingerprint[2]; /* host bookkeeping, pinned with the maps: what each trie pair holds,
                                   so a restart with the same tables loads nothing */
};

/* Value of the one-entry `proxy_netns` array: the cookie of the network namespace the proxy
 * listens in. Only sockets of that namespace are redirected (127.0.0.1 elsewhere is not the proxy). */
struct bg_proxy_netns {
    __u64 cookie;
};

/* The SO_MARK the proxy puts on its upstream sockets unless configured otherwise, and on its
 * listeners, so the kernel can tell them from another process's (setting a mark needs CAP_NET_ADMIN). */
#define BG_DEFAULT_PROXY_MARK 0x42470001u

/* Value of the `guarded` map, keyed by cgroup id (__u64). Descendants inherit the deepest entry.
 * Both slots change in one map update, so a cgroup never sees a policy compiled against other
 * region classes than the tries it looks up. */
struct bg_cgroup_policy {
    __u32 policy_slot;  /* row of `policy_rows` compiled for this cgroup (< BG_MAX_POLICY_SLOTS) */
    __u32 table_slot;   /* which pair of region tries (0 = *_a, 1 = *_b) the rows were compiled for */
    __u32 base_slot;    /* with grants: the policy without them, in force from expires_ns on, so a */
    __u32 _pad;         /* grant ends on time even when no daemon is there to end it */
    __u64 expires_ns;   /* CLOCK_BOOTTIME (bpf_ktime_get_boot_ns: counts suspend); 0 = no grant */
};

/* Row flags. */
#define BG_ROW_AUDIT 1u  /* enforce mode would refuse; the policy is in audit mode, so it passes */
#define BG_ROW_QUIET 2u  /* no event (loopback traffic the policy allows) */
/* Set in a redirected socket's sock_state once its connection reached the proxy's listener: from
 * then on the proxy reports it; a redirect released without it is reported by the kernel.
 * RELEASED is set as the socket goes. Both are set with an atomic fetch-or, so whichever comes
 * first decides who reports: a release racing the handshake is reported once. */
#define BG_ORIG_REACHED_PROXY (1u << 31)
#define BG_ORIG_RELEASED (1u << 30)
/* The proxy claims a connection by the client's address and port. When they come round again
 * before it accepted the connection that held them (a proxy falling behind: a reset frees a port
 * at once), it could not tell the two connections apart. The earlier record is then reported
 * with SUPERSEDED (an event of its own) and the later one stored with CONTESTED: the proxy
 * refuses whatever accepted connection claims it (fail closed). */
#define BG_ORIG_CONTESTED (1u << 29)
#define BG_ORIG_SUPERSEDED (1u << 28)
/* The redirect holds one of its cgroup's and its user's proxied-connection slots (`proxied_live`):
 * given back once, when the socket's state is released. */
#define BG_ORIG_COUNTED (1u << 27)

/* Value of `policy_rows`, indexed by policy_slot * BG_MAX_CLASSES + region class. */
struct bg_policy_row {
    __u8 tcp;           /* enum bg_verdict for TCP connects */
    __u8 udp;           /* enum bg_verdict for UDP (never REDIRECT: the proxy relays TCP only) */
    __u8 tcp_flags;     /* BG_ROW_* */
    __u8 udp_flags;
    __u32 rule;         /* index of the deciding rule in the host's compiled policy */
};

/* Keys of the LPM tries `regions4_*` and `regions6_*` (prefix length in bits, address in network order). */
struct bg_lpm4_key {
    __u32 prefixlen;
    __u8 addr[4];
};

struct bg_lpm6_key {
    __u32 prefixlen;
    __u8 addr[16];
};

struct bg_endpoint {
    __u8 addr[16];      /* IPv4 is IPv4-mapped */
    __u16 port;         /* host order */
    __u16 family;       /* AF_INET or AF_INET6: the family the tool's socket used */
    __u32 _pad;
};

/* Who made a connection, captured in cgroup/connect4|6 where the current task is the caller. */
struct bg_identity {
    __u64 cgroup_id;
    __u64 cookie;       /* socket cookie: joins connect, sockops, getpeername and release */
    __u64 time_ns;      /* CLOCK_MONOTONIC (bpf_ktime_get_ns) */
    __u32 pid;          /* thread id */
    __u32 tgid;         /* process id */
    __u32 uid;
    __u32 gid;
    char comm[BG_COMM_LEN];
};

/* What the kernel remembers about one redirected socket (maps `sock_state` and `orig_by_tuple`). */
struct bg_orig {
    struct bg_identity id;
    struct bg_endpoint dst;     /* the destination the tool asked for */
    __u32 verdict;
    __u32 reason;
    __u32 policy_slot;          /* the proxy finishes the decision with the same compiled policy */
    __u32 region_class;
    __u32 rule;
    __u32 flags;                /* BG_ROW_* of the verdict */
};

/* Key of `orig_by_tuple`: the client's local address and port of a redirected connection. */
struct bg_tuple_key {
    __u8 addr[16];
    __u16 port;
    __u16 _pad0;
    __u32 _pad1;
};

/* Value of `procs`, keyed by tgid (__u32); filled by the exec/fork/exit tracepoints; LRU, so it never fills. */
struct bg_proc {
    /* When this entry began to describe this process id (bpf_ktime_get_ns): the exec, or the fork
     * that made the process. A connection made before it was made by an earlier program or an
     * earlier holder of the id, which the entry does not name. */
    __u64 since_ns;
    __u64 exit_time_ns; /* 0 while the process lives; kept after exit for events still in flight */
    __u32 ppid;
    /* The executed file's device (the kernel's encoding, major << 20 | minor) and inode: what a
     * program bind-mounted over another's path in a mount namespace of its own cannot fake. User
     * space checks them against the path in its own namespace before an `exe:` rule may match. */
    __u32 exe_dev;
    __u64 exe_ino;
    char exe[BG_EXE_LEN];
};

#define BG_TABLE_SLOT_UNKNOWN 0xffffffffu

/* Refusals are aggregated in the kernel: the first refusal of a process to a destination in a
 * second goes to the `refusals` ring (a ring of its own, so a flood of refusals cannot crowd out
 * pass and redirect events in `events`); later ones only count in `refusals_seen`, which the host
 * sweeps once the second is over and reports as one event with the count. Each cgroup gets at
 * most this many first refusals a second; past it, refusals only count in `refusal_budget`. */
#define BG_REFUSAL_EVENTS_PER_SECOND 500
#define BG_REFUSAL_EMITTED 1u /* the key's first refusal is in the ring (not dropped) */

struct bg_refusal_key {
    __u64 cgroup_id;
    __u64 second;       /* bpf_ktime_get_ns() / 1e9 of the refusal */
    __u8 addr[16];
    __u32 tgid;
    __u16 port;
    __u8 protocol;      /* IPPROTO_TCP, IPPROTO_UDP */
    __u8 family;        /* AF_INET or AF_INET6 */
};

struct bg_refusal_count {
    __u64 count;        /* refusals of the key, the first one included */
    __u32 flags;        /* BG_REFUSAL_EMITTED */
    __u32 policy_slot;
    __u32 reason;       /* enum bg_reason */
    __u32 uid;
    __u32 pid;          /* the first refusal's thread */
    __u32 _pad;
};

struct bg_refusal_budget_key {
    __u64 cgroup_id;
    __u64 second;
};

struct bg_refusal_budget {
    __u64 emitted;      /* first refusals that went (or tried to go) to the ring */
    __u64 overflow;     /* refusals past BG_REFUSAL_EVENTS_PER_SECOND: counted, no key, no event */
    __u32 tgid;         /* who made the first of the overflow, to name in its event */
    __u32 pid;
    __u32 uid;
    __u32 policy_slot;
};

/* Failed ring-buffer reservations per class of event (`event_drops`, per-CPU): the host turns
 * them into `drop` audit events with the count. */
enum bg_drop_class {
    BG_DROP_EVENTS = 0,   /* the `events` ring: passes, audits, redirects the kernel reports */
    BG_DROP_REFUSALS = 1, /* the `refusals` ring (the refusals themselves are still counted) */
    BG_DROP_MAX = 2,
};

/* Value of the one-entry `proxy_limits` array: how many redirected sockets a cgroup and a user
 * may hold at once (0: no limit). Live ones are counted in `proxied_live`. */
struct bg_proxy_limits {
    __u32 per_cgroup;
    __u32 per_uid;
};

enum bg_live_kind {
    BG_LIVE_CGROUP = 1,
    BG_LIVE_UID = 2,
};

/* Key of `proxied_live` (value: __u64 live redirected sockets). */
struct bg_live_key {
    __u64 id;           /* cgroup id or uid */
    __u32 kind;         /* enum bg_live_kind */
    __u32 _pad;
};

/* Record in the `events` ring buffer. */
struct bg_connect_event {
    __u32 kind;         /* enum bg_event_kind */
    __u32 verdict;      /* enum bg_verdict */
    __u32 reason;       /* enum bg_reason */
    __u32 protocol;     /* IPPROTO_TCP, IPPROTO_UDP */
    struct bg_identity id;
    struct bg_endpoint dst;
    __u32 ppid;         /* 0 when the process table did not know the process */
    __u32 policy_slot;
    __u32 region_class; /* these three are for reading with bpftool: the host names the region, */
    __u32 rule;         /* rule and reason itself, from its own tables and the policy of the slot */
    __u32 flags;        /* BG_ROW_*, and BG_ORIG_* for a redirect the kernel reports */
    __u32 table_slot;   /* BG_TABLE_SLOT_UNKNOWN for a redirect the kernel reports */
    char exe[BG_EXE_LEN];
};

#endif
