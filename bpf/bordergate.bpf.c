// SPDX-License-Identifier: GPL-2.0
/*
 * Bordergate's kernel side: catch the outbound connects of guarded cgroups, remember who made them
 * and where they were going, and steer them into the user-space proxy.
 *
 * The path of one TCP connect from a guarded cgroup:
 *   connect4/6   identity + original destination -> the socket's sock_state; rewrite to the proxy
 *   sockops      on ACTIVE_ESTABLISHED: sock_state -> orig_by_tuple[client addr, port]; the
 *                state is marked as having reached the proxy, which reports it from then on
 *                (the daemon reports entries it never claimed when it starts and stops; a
 *                record still unclaimed when its port comes round is reported, and the new
 *                one marked contested: the proxy refuses it, as it cannot tell the two apart)
 *   proxy        accepts, reads orig_by_tuple[peer] (and deletes it), dials the original
 *   getpeername  the tool still sees its original peer
 *   sock_release a redirect that never reached the proxy (nothing listened, the tool gave up
 *                first) becomes an event; sock_state goes with the socket
 * sock_state is socket-local storage (freed with the socket, never evicted); orig_by_tuple is LRU,
 * so an entry the proxy never claims cannot leak. Redirects raise no event at connect: the proxy
 * reports every one it accepts, the kernel the ones it never saw.
 *
 * Residency: the destination's region class comes from an LPM trie (the host's region tables),
 * and the cgroup's compiled policy row for that class gives the verdict: DENY fails connect() with
 * EPERM, PASS goes direct, REDIRECT goes to the proxy (which needs hostnames or the process to
 * decide, or inspects). UDP connects and unconnected sends (sendmsg4/6) get the row's UDP verdict.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/socket.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "bordergate_abi.h"

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif
#define SOCK_STREAM 1
#define SOCK_DGRAM 2

/* Context fields must be read 4 bytes at a time; without this clang merges neighbouring u32 loads
 * into one u64 load, which the verifier rejects as an invalid context access. */
#define CTX_U32(x) (*(volatile __u32 *)&(x))

char LICENSE[] SEC("license") = "GPL";

/* Minimal CO-RE views of kernel structs: libbpf relocates the offsets against the running kernel's
 * BTF, so no vmlinux.h is needed at build time. */
struct task_struct {
    int pid;
    int tgid;
    struct task_struct *real_parent;
} __attribute__((preserve_access_index));

struct linux_binprm {
    const char *filename;
} __attribute__((preserve_access_index));

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct bg_config);
} config SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 4096);
    __type(key, __u64);
    __type(value, struct bg_cgroup_policy);
} guarded SEC(".maps");

/* Two pairs of region tries: the host fills the idle pair and then moves each cgroup over with one
 * update of `guarded`, so a reload never shows a half-loaded table. */
#define REGION_TRIE(name, keytype)                 \
    struct {                                       \
        __uint(type, BPF_MAP_TYPE_LPM_TRIE);       \
        __uint(max_entries, 2000000);              \
        __uint(map_flags, BPF_F_NO_PREALLOC);      \
        __type(key, keytype);                      \
        __type(value, __u32);                      \
    } name SEC(".maps")

REGION_TRIE(regions4_a, struct bg_lpm4_key);
REGION_TRIE(regions4_b, struct bg_lpm4_key);
REGION_TRIE(regions6_a, struct bg_lpm6_key);
REGION_TRIE(regions6_b, struct bg_lpm6_key);

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, BG_MAX_POLICY_SLOTS * BG_MAX_CLASSES);
    __type(key, __u32);
    __type(value, struct bg_policy_row);
} policy_rows SEC(".maps");

/* UDP events are rate-limited per socket and destination: one per second is an audit trail, one
 * per datagram would be a flood. */
struct bg_udp_key {
    __u64 cookie;
    __u8 addr[16];
    __u16 port;
    __u16 _pad0;
    __u32 _pad1;
};

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 16384);
    __type(key, struct bg_udp_key);
    __type(value, __u64);
} udp_seen SEC(".maps");

/* A redirected socket's original destination and who connected it: lives and dies with the socket. */
struct {
    __uint(type, BPF_MAP_TYPE_SK_STORAGE);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, int);
    __type(value, struct bg_orig);
} sock_state SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 65536);
    __type(key, struct bg_tuple_key);
    __type(value, struct bg_orig);
} orig_by_tuple SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 32768);
    __type(key, __u32);
    __type(value, struct bg_proc);
} procs SEC(".maps");

/* A generation per bucket of process ids, bumped after every exec and every new process (after
 * `procs` is written). The daemon caches what it learnt of a process for the connections that
 * follow and reads this array through a read-only mapping, so telling a cached description from
 * a stale one costs no system call. Buckets are shared, so a bump can only cause a needless miss. */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(map_flags, BPF_F_MMAPABLE);
    __uint(max_entries, BG_PROC_GEN_BUCKETS);
    __type(key, __u32);
    __type(value, __u64);
} proc_gen SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, BG_STAT_MAX);
    __type(key, __u32);
    __type(value, __u64);
} stats SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 8 << 20);
} events SEC(".maps");

/* Wake the reader only past this much unread data; otherwise it drains on a short timer. A wakeup
 * per event cost a third of the connect rate in measurements (DESIGN.md, Performance). */
#define BG_WAKEUP_THRESHOLD (256 << 10)

static __always_inline void count(__u32 which)
{
    __u64 *v = bpf_map_lookup_elem(&stats, &which);
    if (v)
        *v += 1;
}

/* The deepest guarded ancestor (or self) of the current cgroup decides. */
static __always_inline struct bg_cgroup_policy *policy_for_current(void)
{
    struct bg_cgroup_policy *found = 0;
    for (int level = 0; level < BG_MAX_CGROUP_DEPTH; level++) {
        __u64 id = bpf_get_current_ancestor_cgroup_id(level);
        if (id == 0)
            break;
        struct bg_cgroup_policy *p = bpf_map_lookup_elem(&guarded, &id);
        if (p)
            found = p;
    }
    return found;
}

static __always_inline void fill_identity(struct bg_identity *id, __u64 cookie)
{
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    __u64 uid_gid = bpf_get_current_uid_gid();
    id->pid = (__u32)pid_tgid;
    id->tgid = pid_tgid >> 32;
    id->uid = (__u32)uid_gid;
    id->gid = uid_gid >> 32;
    id->cgroup_id = bpf_get_current_cgroup_id();
    id->cookie = cookie;
    id->time_ns = bpf_ktime_get_ns();
    bpf_get_current_comm(id->comm, sizeof(id->comm));
}

static __always_inline void emit(struct bg_orig *o, __u32 protocol, __u32 table_slot)
{
    struct bg_connect_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
    if (!e) {
        count(BG_STAT_EVENTS_DROPPED);
        return;
    }
    e->kind = BG_EVENT_CONNECT;
    e->verdict = o->verdict;
    e->reason = o->reason;
    e->protocol = protocol;
    e->id = o->id;
    e->dst = o->dst;
    e->policy_slot = o->policy_slot;
    e->region_class = o->region_class;
    e->rule = o->rule;
    e->flags = o->flags;
    e->table_slot = table_slot;
    struct bg_proc *p = bpf_map_lookup_elem(&procs, &o->id.tgid);
    /* at sock_release the process may have exec'd since it connected: then the entry names
     * another program, and the event names none */
    if (p && p->since_ns <= o->id.time_ns) {
        e->ppid = p->ppid;
        __builtin_memcpy(e->exe, p->exe, BG_EXE_LEN);
    } else {
        e->ppid = 0;
        e->exe[0] = 0;
    }
    __u64 flags = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) > BG_WAKEUP_THRESHOLD
                      ? BPF_RB_FORCE_WAKEUP
                      : BPF_RB_NO_WAKEUP;
    bpf_ringbuf_submit(e, flags);
}

static __always_inline void set_mapped_v4(__u8 *addr, __u32 ip4_net)
{
    __builtin_memset(addr, 0, 10);
    addr[10] = 0xff;
    addr[11] = 0xff;
    __builtin_memcpy(addr + 12, &ip4_net, 4);
}

static __always_inline int is_mapped_v4(const __u32 *ip6)
{
    return ip6[0] == 0 && ip6[1] == 0 && ip6[2] == bpf_htonl(0x0000ffff);
}

/* The region class of a destination: the longest prefix of the cgroup's tables that holds it. */
static __always_inline __u32 classify(const struct bg_endpoint *dst, __u32 table_slot)
{
    __u32 *cls;
    if (is_mapped_v4((const __u32 *)dst->addr)) {
        struct bg_lpm4_key k = {.prefixlen = 32};
        __builtin_memcpy(k.addr, dst->addr + 12, 4);
        cls = table_slot ? bpf_map_lookup_elem(&regions4_b, &k) : bpf_map_lookup_elem(&regions4_a, &k);
    } else {
        struct bg_lpm6_key k = {.prefixlen = 128};
        __builtin_memcpy(k.addr, dst->addr, 16);
        cls = table_slot ? bpf_map_lookup_elem(&regions6_b, &k) : bpf_map_lookup_elem(&regions6_a, &k);
    }
    return cls ? *cls : BG_CLASS_UNKNOWN;
}

/*
 * Decide one connect or send: 1 to let it proceed (possibly redirected, per o->verdict), 0 to fail
 * it with EPERM, -1 for the proxy's own connects, which are left alone and not reported. With
 * `quiet` set, no event is wanted. Fails closed: no policy, no row, no proxy -> DENY.
 */
static __always_inline int decide(struct bg_orig *o, __u32 mark, int udp, __u32 *table_slot,
                                  int *quiet, struct bg_config **cfg_out)
{
    __u32 zero = 0;
    struct bg_config *cfg = bpf_map_lookup_elem(&config, &zero);
    *cfg_out = cfg;
    *quiet = 0;
    if (!udp && cfg && cfg->proxy_tgid != 0 && cfg->proxy_tgid == o->id.tgid && mark == cfg->proxy_mark) {
        count(BG_STAT_LOOP_GUARD);
        return -1; /* the proxy's own dial: untouched, not reported */
    }
    struct bg_cgroup_policy *pol = policy_for_current();
    if (!pol) {
        o->verdict = BG_VERDICT_DENY;
        o->reason = BG_REASON_NO_POLICY;
        return 0;
    }
    *table_slot = pol->table_slot;
    o->policy_slot = pol->policy_slot;
    if (pol->expires_ns && bpf_ktime_get_boot_ns() >= pol->expires_ns)
        o->policy_slot = pol->base_slot; /* the grant is over, whether or not a daemon said so */
    __u32 cls = classify(&o->dst, pol->table_slot);
    o->region_class = cls;
    struct bg_policy_row *row = 0;
    if (o->policy_slot < BG_MAX_POLICY_SLOTS && cls < BG_MAX_CLASSES) {
        __u32 idx = o->policy_slot * BG_MAX_CLASSES + cls;
        row = bpf_map_lookup_elem(&policy_rows, &idx);
    }
    if (!row || (udp ? row->udp : row->tcp) == BG_VERDICT_NONE) {
        o->verdict = BG_VERDICT_DENY;
        o->reason = BG_REASON_NO_POLICY;
        return 0;
    }
    o->reason = BG_REASON_POLICY;
    o->rule = row->rule;
    o->verdict = udp ? row->udp : row->tcp;
    o->flags = udp ? row->udp_flags : row->tcp_flags;
    if (o->flags & BG_ROW_QUIET)
        *quiet = 1;
    if (udp && o->verdict == BG_VERDICT_REDIRECT) {
        o->verdict = BG_VERDICT_DENY; /* the proxy cannot relay UDP: fail closed */
        o->reason = BG_REASON_NO_POLICY;
    }
    if (o->verdict == BG_VERDICT_REDIRECT && (!cfg || !(cfg->flags & BG_CONFIG_FLAG_READY) || cfg->proxy_port == 0)) {
        o->verdict = BG_VERDICT_DENY;
        o->reason = BG_REASON_NO_PROXY;
    }
    if (o->verdict == BG_VERDICT_DENY)
        return 0;
    return 1;
}

static __always_inline void account(struct bg_orig *o, int udp)
{
    if (udp)
        count(BG_STAT_UDP_CHECKED);
    if (o->flags & BG_ROW_AUDIT)
        count(BG_STAT_AUDITED);
    if (o->verdict == BG_VERDICT_REDIRECT)
        count(BG_STAT_REDIRECTED);
    else if (o->verdict == BG_VERDICT_PASS)
        count(BG_STAT_PASSED);
    else {
        count(BG_STAT_DENIED);
        if (udp)
            count(BG_STAT_UDP_DENIED);
    }
}

/* Whether a UDP verdict for this socket and destination was reported less than a second ago. */
static __always_inline int udp_recently_reported(struct bg_orig *o)
{
    struct bg_udp_key k = {};
    k.cookie = o->id.cookie;
    __builtin_memcpy(k.addr, o->dst.addr, 16);
    k.port = o->dst.port;
    __u64 now = o->id.time_ns;
    __u64 *last = bpf_map_lookup_elem(&udp_seen, &k);
    if (last && now - *last < 1000000000ULL)
        return 1;
    bpf_map_update_elem(&udp_seen, &k, &now, BPF_ANY);
    return 0;
}

/* The socket's state is done with (the socket goes, or connects again). A redirect whose
 * connection never reached the proxy's listener (no daemon listened, its backlog was full, the
 * tool gave up first) is on record nowhere else: report it, unless sockops got there first. */
static __always_inline void release_state(struct bg_orig *o)
{
    __u32 prev = __sync_fetch_and_or(&o->flags, BG_ORIG_RELEASED);
    if (o->verdict == BG_VERDICT_REDIRECT && !(prev & (BG_ORIG_REACHED_PROXY | BG_ORIG_RELEASED | BG_ROW_QUIET)))
        emit(o, IPPROTO_TCP, BG_TABLE_SLOT_UNKNOWN);
}

/*
 * The part of connect4/6 and sendmsg4/6 that does not depend on the family: identity, verdict,
 * counters, the event, and for a redirect the socket's sock_state. `o->dst` is filled by
 * the caller. Returns -1 to refuse (EPERM), 0 to let it proceed unchanged, or the proxy's port to
 * rewrite it to.
 */
static __always_inline int intercept(struct bpf_sock_addr *ctx, struct bg_orig *o, int udp)
{
    __u64 cookie = bpf_get_socket_cookie(ctx);
    fill_identity(&o->id, cookie);
    __u32 mark = 0;
    struct bpf_sock *sk = ctx->sk;
    if (sk)
        mark = sk->mark;
    __u32 table_slot = 0;
    int quiet = 0;
    struct bg_config *cfg = 0;
    int allow = decide(o, mark, udp, &table_slot, &quiet, &cfg);
    if (allow < 0)
        return 0;
    /* A socket may connect again after a failed connect: an earlier redirect that never reached
     * the proxy is reported now, and its state does not outlive this verdict. */
    struct bg_orig *st = udp ? 0 : bpf_sk_storage_get(&sock_state, ctx->sk, 0, 0);
    if (st) {
        release_state(st);
        st->verdict = BG_VERDICT_NONE;
        st = 0;
    }
    if (allow && o->verdict == BG_VERDICT_REDIRECT && cfg) {
        st = bpf_sk_storage_get(&sock_state, ctx->sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
        if (!st) {
            /* out of memory: the proxy could not place the connection, so refuse it (fail closed) */
            o->verdict = BG_VERDICT_DENY;
            o->reason = BG_REASON_NO_STATE;
            allow = 0;
        }
    }
    if (!quiet) {
        count(BG_STAT_CONNECT_SEEN);
        account(o, udp);
        /* a redirect is reported by the proxy, or at sock_release if it never got there */
        if (o->verdict != BG_VERDICT_REDIRECT && (!udp || !udp_recently_reported(o)))
            emit(o, udp ? IPPROTO_UDP : IPPROTO_TCP, table_slot);
    }
    if (!allow)
        return -1;
    if (st) {
        *st = *o;
        return cfg->proxy_port;
    }
    return 0;
}

/* TCP gets every verdict; every other kind of socket (UDP, ICMP echo, raw) gets the UDP verdict,
 * which never redirects: whatever the proxy cannot relay is allowed or refused, not waved through. */
static __always_inline int socket_kind(__u32 type)
{
    return type == SOCK_STREAM ? 0 : 1;
}

static __always_inline int handle4(struct bpf_sock_addr *ctx, int udp)
{
    struct bg_orig o = {};
    set_mapped_v4(o.dst.addr, ctx->user_ip4);
    o.dst.port = bpf_ntohs(ctx->user_port);
    o.dst.family = AF_INET;

    int port = intercept(ctx, &o, udp);
    if (port < 0)
        return 0;
    if (port > 0) {
        ctx->user_ip4 = bpf_htonl(0x7f000001);
        ctx->user_port = bpf_htons((__u16)port);
    }
    return 1;
}

static __always_inline int handle6(struct bpf_sock_addr *ctx, int udp)
{
    __u32 ip6[4] = {CTX_U32(ctx->user_ip6[0]), CTX_U32(ctx->user_ip6[1]),
                    CTX_U32(ctx->user_ip6[2]), CTX_U32(ctx->user_ip6[3])};
    struct bg_orig o = {};
    __builtin_memcpy(o.dst.addr, ip6, 16);
    o.dst.port = bpf_ntohs(ctx->user_port);
    o.dst.family = AF_INET6;

    int port = intercept(ctx, &o, udp);
    if (port < 0)
        return 0;
    if (port > 0) {
        if (is_mapped_v4(ip6)) {
            /* ::ffff:127.0.0.1 reaches the proxy's IPv4 listener */
            ctx->user_ip6[0] = 0;
            ctx->user_ip6[1] = 0;
            ctx->user_ip6[2] = bpf_htonl(0x0000ffff);
            ctx->user_ip6[3] = bpf_htonl(0x7f000001);
        } else {
            ctx->user_ip6[0] = 0;
            ctx->user_ip6[1] = 0;
            ctx->user_ip6[2] = 0;
            ctx->user_ip6[3] = bpf_htonl(1);
        }
        ctx->user_port = bpf_htons((__u16)port);
    }
    return 1;
}

SEC("cgroup/connect4")
int bg_connect4(struct bpf_sock_addr *ctx)
{
    return handle4(ctx, socket_kind(ctx->type));
}

SEC("cgroup/connect6")
int bg_connect6(struct bpf_sock_addr *ctx)
{
    return handle6(ctx, socket_kind(ctx->type));
}

/* Only sockets whose every destination passes the verdict hooks above may be created in a guarded
 * cgroup: TCP (connect4|6) and UDP (connect4|6, sendmsg4|6). Raw sockets, SCTP, MPTCP and ICMP
 * sockets could reach a forbidden destination without a verdict, so they fail with EPERM. */
SEC("cgroup/sock_create")
int bg_sock_create(struct bpf_sock *sk)
{
    if (sk->family != AF_INET && sk->family != AF_INET6)
        return 1;
    if (sk->type == SOCK_STREAM && sk->protocol == IPPROTO_TCP)
        return 1;
    if (sk->type == SOCK_DGRAM && sk->protocol == IPPROTO_UDP)
        return 1;
    count(BG_STAT_SOCKETS_REFUSED);
    return 0;
}

/* Unconnected UDP (sendto with an address): the same verdicts, so DNS or QUIC to a forbidden
 * region cannot slip past the TCP rules. Connected UDP sockets were decided at connect. */
SEC("cgroup/sendmsg4")
int bg_sendmsg4(struct bpf_sock_addr *ctx)
{
    return handle4(ctx, 1);
}

SEC("cgroup/sendmsg6")
int bg_sendmsg6(struct bpf_sock_addr *ctx)
{
    return handle6(ctx, 1);
}

/* Re-key the original destination by the client's local address and port, which is all the proxy
 * sees of the connection it accepts. Runs before the final ACK is sent, so before the proxy's
 * accept() can return. */
SEC("sockops")
int bg_sockops(struct bpf_sock_ops *skops)
{
    if (skops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB)
        return 1;
    struct bpf_sock *sk = skops->sk;
    if (!sk)
        return 1;
    struct bg_orig *o = bpf_sk_storage_get(&sock_state, sk, 0, 0);
    if (!o || o->verdict != BG_VERDICT_REDIRECT)
        return 1;
    /* the proxy reports it from here on, unless sock_release already did (a close racing the
     * handshake): then it is not placed, and the proxy refuses it */
    if (__sync_fetch_and_or(&o->flags, BG_ORIG_REACHED_PROXY) & BG_ORIG_RELEASED)
        return 1;
    struct bg_tuple_key key = {};
    if (skops->family == AF_INET) {
        set_mapped_v4(key.addr, skops->local_ip4);
    } else {
        __u32 ip6[4] = {CTX_U32(skops->local_ip6[0]), CTX_U32(skops->local_ip6[1]),
                        CTX_U32(skops->local_ip6[2]), CTX_U32(skops->local_ip6[3])};
        __builtin_memcpy(key.addr, ip6, 16);
    }
    key.port = (__u16)skops->local_port; /* host order in sockops */
    if (bpf_map_update_elem(&orig_by_tuple, &key, o, BPF_NOEXIST) != 0) {
        /* the port came round before the proxy accepted the connection that held it (see
         * BG_ORIG_CONTESTED); delete decides against a claim racing this */
        struct bg_orig *prev = bpf_map_lookup_elem(&orig_by_tuple, &key);
        if (prev) {
            struct bg_orig earlier = *prev;
            if (bpf_map_delete_elem(&orig_by_tuple, &key) == 0) {
                earlier.flags |= BG_ORIG_SUPERSEDED;
                emit(&earlier, IPPROTO_TCP, BG_TABLE_SLOT_UNKNOWN);
                __sync_fetch_and_or(&o->flags, BG_ORIG_CONTESTED);
            }
        }
        bpf_map_update_elem(&orig_by_tuple, &key, o, BPF_ANY);
    }
    count(BG_STAT_ESTABLISHED_MAPPED);
    return 1;
}

SEC("cgroup/getpeername4")
int bg_getpeername4(struct bpf_sock_addr *ctx)
{
    struct bg_orig *o = bpf_sk_storage_get(&sock_state, ctx->sk, 0, 0);
    if (o && o->verdict == BG_VERDICT_REDIRECT && o->dst.family == AF_INET) {
        __u32 ip4;
        __builtin_memcpy(&ip4, o->dst.addr + 12, 4);
        ctx->user_ip4 = ip4;
        ctx->user_port = bpf_htons(o->dst.port);
    }
    return 1;
}

SEC("cgroup/getpeername6")
int bg_getpeername6(struct bpf_sock_addr *ctx)
{
    struct bg_orig *o = bpf_sk_storage_get(&sock_state, ctx->sk, 0, 0);
    if (o && o->verdict == BG_VERDICT_REDIRECT && o->dst.family == AF_INET6) {
        __u32 ip6[4];
        __builtin_memcpy(ip6, o->dst.addr, 16);
        ctx->user_ip6[0] = ip6[0];
        ctx->user_ip6[1] = ip6[1];
        ctx->user_ip6[2] = ip6[2];
        ctx->user_ip6[3] = ip6[3];
        ctx->user_port = bpf_htons(o->dst.port);
    }
    return 1;
}

/* The state itself goes with the socket; a redirect that never reached the proxy is reported. */
SEC("cgroup/sock_release")
int bg_sock_release(struct bpf_sock *sk)
{
    struct bg_orig *o = bpf_sk_storage_get(&sock_state, sk, 0, 0);
    if (o)
        release_state(o);
    return 1;
}

static __always_inline void bump_proc_gen(__u32 tgid)
{
    __u32 k = tgid & (BG_PROC_GEN_BUCKETS - 1);
    __u64 *g = bpf_map_lookup_elem(&proc_gen, &k);
    if (g)
        __sync_fetch_and_add(g, 1); /* a full barrier: the `procs` write is visible first */
}

/* The process table: a connect names its process by executable and parent even when the process
 * has exited by the time user space reads the event. */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(bg_exec, struct task_struct *p, int old_pid, struct linux_binprm *bprm)
{
    __u32 tgid = p->tgid;
    struct bg_proc proc = {};
    proc.since_ns = bpf_ktime_get_ns();
    proc.ppid = p->real_parent->tgid;
    bpf_probe_read_kernel_str(proc.exe, sizeof(proc.exe), bprm->filename);
    bpf_map_update_elem(&procs, &tgid, &proc, BPF_ANY);
    bump_proc_gen(tgid);
    return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(bg_fork, struct task_struct *parent, struct task_struct *child)
{
    if (child->pid != child->tgid)
        return 0; /* a new thread, not a new process */
    __u32 ptgid = parent->tgid;
    __u32 tgid = child->tgid;
    struct bg_proc *pp = bpf_map_lookup_elem(&procs, &ptgid);
    if (pp) {
        struct bg_proc proc = {};
        proc.since_ns = bpf_ktime_get_ns();
        proc.exit_time_ns = 0;
        proc.ppid = ptgid;
        __builtin_memcpy(proc.exe, pp->exe, BG_EXE_LEN);
        bpf_map_update_elem(&procs, &tgid, &proc, BPF_ANY);
    } else {
        /* a child of a process older than the guard: user space falls back to /proc, and an
         * entry an earlier holder of this process id left behind must not name it */
        bpf_map_delete_elem(&procs, &tgid);
    }
    /* the process id may be a reused one: whatever was cached for it is stale */
    bump_proc_gen(tgid);
    return 0;
}

/* Entries outlive their process (LRU evicts them) because connect events and proxied connections
 * of a process that exits at once are attributed after the exit; the exit time tells user space not
 * to trust /proc/<pid>, which may already belong to someone else. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(bg_exit, struct task_struct *p)
{
    if (p->pid != p->tgid)
        return 0;
    __u32 tgid = p->tgid;
    struct bg_proc *proc = bpf_map_lookup_elem(&procs, &tgid);
    if (proc)
        proc->exit_time_ns = bpf_ktime_get_ns();
    return 0;
}
