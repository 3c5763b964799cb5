/* SPDX-License-Identifier: GPL-2.0 */
/* What reaches user space: connect events in the ring buffer, and the counters. */
#ifndef BG_LIB_EVENTS_H
#define BG_LIB_EVENTS_H

#include <linux/in.h>

#include "maps.h"

/* Wake the reader only past this much unread data; otherwise it drains on a short timer. A wakeup
 * per event cost a third of the connect rate in measurements (README, Performance). */
#define BG_WAKEUP_THRESHOLD (256 << 10)

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

#endif
