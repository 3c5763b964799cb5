/* SPDX-License-Identifier: GPL-2.0 */
/* What reaches user space: connect events in the ring buffers, refusal counts, and the counters;
 * and the proxied-connection slots a redirect holds. */
#ifndef BG_LIB_EVENTS_H
#define BG_LIB_EVENTS_H

#include <linux/in.h>

#include "maps.h"

/* Wake the reader only past this much unread data; otherwise it drains on a short timer. A wakeup
 * per event cost a third of the connect rate in measurements (README, Performance). */
#define BG_WAKEUP_THRESHOLD (256 << 10)

static __always_inline void fill_event(struct bg_connect_event *e, struct bg_orig *o, __u32 protocol, __u32 table_slot)
{
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
}

/* Passes, audits and the redirects the kernel reports: the `events` ring. */
static __always_inline void emit(struct bg_orig *o, __u32 protocol, __u32 table_slot)
{
    struct bg_connect_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
    if (!e) {
        count(BG_STAT_EVENTS_DROPPED);
        count_drop(BG_DROP_EVENTS);
        return;
    }
    fill_event(e, o, protocol, table_slot);
    __u64 flags = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) > BG_WAKEUP_THRESHOLD
                      ? BPF_RB_FORCE_WAKEUP
                      : BPF_RB_NO_WAKEUP;
    bpf_ringbuf_submit(e, flags);
}

/* A refusal's first event: the `refusals` ring. Returns whether it is in the ring. */
static __always_inline int emit_refusal(struct bg_orig *o, __u32 protocol, __u32 table_slot)
{
    struct bg_connect_event *e = bpf_ringbuf_reserve(&refusals, sizeof(*e), 0);
    if (!e) {
        count(BG_STAT_EVENTS_DROPPED);
        count_drop(BG_DROP_REFUSALS);
        return 0;
    }
    fill_event(e, o, protocol, table_slot);
    __u64 flags = bpf_ringbuf_query(&refusals, BPF_RB_AVAIL_DATA) > BG_WAKEUP_THRESHOLD / 4
                      ? BPF_RB_FORCE_WAKEUP
                      : BPF_RB_NO_WAKEUP;
    bpf_ringbuf_submit(e, flags);
    return 1;
}

/* A refusal: only the first of its (cgroup, process, destination, second) key is an event; the
 * rest are counted for the host, which reports the count once the second is over (bordergate_abi.h,
 * BG_REFUSAL_EVENTS_PER_SECOND). A refusal is never lost without being counted somewhere, except
 * when the LRU evicts its key before the host swept it. */
static __always_inline void report_refusal(struct bg_orig *o, __u32 protocol, __u32 table_slot)
{
    struct bg_refusal_key k = {};
    k.cgroup_id = o->id.cgroup_id;
    k.second = o->id.time_ns / 1000000000ULL;
    __builtin_memcpy(k.addr, o->dst.addr, 16);
    k.tgid = o->id.tgid;
    k.port = o->dst.port;
    k.protocol = (__u8)protocol;
    k.family = (__u8)o->dst.family;
    struct bg_refusal_count *c = bpf_map_lookup_elem(&refusals_seen, &k);
    if (c) {
        __sync_fetch_and_add(&c->count, 1);
        return;
    }
    struct bg_refusal_budget_key bk = {.cgroup_id = k.cgroup_id, .second = k.second};
    struct bg_refusal_budget *b = bpf_map_lookup_elem(&refusal_budget, &bk);
    if (!b) {
        struct bg_refusal_budget fresh = {};
        bpf_map_update_elem(&refusal_budget, &bk, &fresh, BPF_NOEXIST);
        b = bpf_map_lookup_elem(&refusal_budget, &bk);
    }
    if (b && __sync_fetch_and_add(&b->emitted, 1) >= BG_REFUSAL_EVENTS_PER_SECOND) {
        if (__sync_fetch_and_add(&b->overflow, 1) == 0) {
            b->tgid = o->id.tgid;
            b->pid = o->id.pid;
            b->uid = o->id.uid;
            b->policy_slot = o->policy_slot;
        }
        return;
    }
    struct bg_refusal_count v = {};
    v.count = 1;
    v.flags = BG_REFUSAL_EMITTED;
    v.policy_slot = o->policy_slot;
    v.reason = o->reason;
    v.uid = o->id.uid;
    v.pid = o->id.pid;
    if (bpf_map_update_elem(&refusals_seen, &k, &v, BPF_NOEXIST) != 0) {
        c = bpf_map_lookup_elem(&refusals_seen, &k);
        if (c) {
            __sync_fetch_and_add(&c->count, 1); /* another CPU's refusal of the key came first */
            return;
        }
        emit_refusal(o, protocol, table_slot); /* not countable: an event of its own */
        return;
    }
    if (!emit_refusal(o, protocol, table_slot)) {
        /* the ring is full: the host's sweep reports this one in the count */
        c = bpf_map_lookup_elem(&refusals_seen, &k);
        if (c)
            __sync_fetch_and_and(&c->flags, ~BG_REFUSAL_EMITTED);
    }
}

/* Live redirected sockets of one cgroup or user (created at 0 when missing). */
static __always_inline __u64 *live_counter(__u32 kind, __u64 id)
{
    struct bg_live_key k = {};
    k.id = id;
    k.kind = kind;
    __u64 *v = bpf_map_lookup_elem(&proxied_live, &k);
    if (v)
        return v;
    __u64 zero = 0;
    bpf_map_update_elem(&proxied_live, &k, &zero, BPF_NOEXIST);
    return bpf_map_lookup_elem(&proxied_live, &k);
}

/* Takes a proxied-connection slot of the socket's cgroup and user; 0 when either is at its limit
 * (or cannot be counted: fail closed). Every redirect is counted, limited or not, so a limit set
 * later counts the sockets already open. */
static __always_inline int take_proxy_slot(const struct bg_orig *o)
{
    __u32 zero = 0;
    struct bg_proxy_limits *lim = bpf_map_lookup_elem(&proxy_limits, &zero);
    __u64 *c = live_counter(BG_LIVE_CGROUP, o->id.cgroup_id);
    __u64 *u = live_counter(BG_LIVE_UID, o->id.uid);
    if (!c || !u)
        return 0;
    __u64 held_c = __sync_fetch_and_add(c, 1);
    __u64 held_u = __sync_fetch_and_add(u, 1);
    if (lim && ((lim->per_cgroup && held_c >= lim->per_cgroup) || (lim->per_uid && held_u >= lim->per_uid))) {
        __sync_fetch_and_add(c, -1);
        __sync_fetch_and_add(u, -1);
        return 0;
    }
    return 1;
}

static __always_inline void give_proxy_slot(const struct bg_orig *o)
{
    struct bg_live_key k = {};
    k.id = o->id.cgroup_id;
    k.kind = BG_LIVE_CGROUP;
    __u64 *v = bpf_map_lookup_elem(&proxied_live, &k);
    if (v)
        __sync_fetch_and_add(v, -1);
    k.id = o->id.uid;
    k.kind = BG_LIVE_UID;
    v = bpf_map_lookup_elem(&proxied_live, &k);
    if (v)
        __sync_fetch_and_add(v, -1);
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
    if ((prev & BG_ORIG_COUNTED) && !(prev & BG_ORIG_RELEASED))
        give_proxy_slot(o);
    if (o->verdict == BG_VERDICT_REDIRECT && !(prev & (BG_ORIG_REACHED_PROXY | BG_ORIG_RELEASED | BG_ROW_QUIET)))
        emit(o, IPPROTO_TCP, BG_TABLE_SLOT_UNKNOWN);
}

#endif
