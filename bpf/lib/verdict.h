/* SPDX-License-Identifier: GPL-2.0 */
/* The verdict on one connect or send: classify the destination, read the cgroup's policy row,
 * and for a redirect keep the socket's state. */
#ifndef BG_LIB_VERDICT_H
#define BG_LIB_VERDICT_H

#include <linux/in.h>

#include "maps.h"
#include "addr.h"
#include "identity.h"
#include "events.h"

/* What decide() concluded. */
enum bg_decision {
    BG_DECISION_REFUSE = 0,  /* fail it with EPERM: o->verdict is DENY */
    BG_DECISION_ALLOW = 1,   /* let it proceed, redirected or not as o->verdict says */
};

/* What intercept() asks of the hook. */
enum bg_action {
    BG_ACTION_REFUSE = 0,    /* return 0: EPERM */
    BG_ACTION_PROCEED = 1,   /* return 1 with the destination unchanged */
    BG_ACTION_REDIRECT = 2,  /* rewrite the destination to the proxy's port on loopback */
};

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

/* The proxy's own upstream dial: left alone and not reported. Both the process and the mark must
 * match (bordergate_abi.h, bg_config). */
static __always_inline int is_proxy_dial(const struct bg_config *cfg, const struct bg_orig *o, __u32 mark, int udp)
{
    return !udp && cfg && cfg->proxy_tgid != 0 && cfg->proxy_tgid == o->id.tgid && mark == cfg->proxy_mark;
}

/*
 * Decide one connect or send under the cgroup's policy `pol`: fills o's verdict, reason, policy
 * slot, class, rule and flags. Fails closed: no policy, no row, no proxy -> DENY.
 */
static __always_inline enum bg_decision decide(struct bg_orig *o, const struct bg_cgroup_policy *pol,
                                               const struct bg_config *cfg, __u64 netns, int udp)
{
    if (!pol) {
        o->verdict = BG_VERDICT_DENY;
        o->reason = BG_REASON_NO_POLICY;
        return BG_DECISION_REFUSE;
    }
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
        return BG_DECISION_REFUSE;
    }
    o->reason = BG_REASON_POLICY;
    o->rule = row->rule;
    o->verdict = udp ? row->udp : row->tcp;
    o->flags = udp ? row->udp_flags : row->tcp_flags;
    if (udp && o->verdict == BG_VERDICT_REDIRECT) {
        o->verdict = BG_VERDICT_DENY; /* the proxy cannot relay UDP: fail closed */
        o->reason = BG_REASON_NO_POLICY;
    }
    if (o->verdict == BG_VERDICT_REDIRECT && (!cfg || !(cfg->flags & BG_CONFIG_FLAG_READY) || cfg->proxy_port == 0)) {
        o->verdict = BG_VERDICT_DENY;
        o->reason = BG_REASON_NO_PROXY;
    }
    /* 127.0.0.1 of another network namespace is whoever listens there (a user namespace makes
     * one without privilege), and sockops would record the connection for the real proxy */
    if (o->verdict == BG_VERDICT_REDIRECT && netns != proxy_netns_cookie()) {
        o->verdict = BG_VERDICT_DENY;
        o->reason = BG_REASON_OTHER_NETNS;
    }
    /* No record, no connection: while the daemon cannot write its audit log, what would have
     * been recorded is refused (quiet rows are never recorded, so loopback keeps working) */
    if (o->verdict != BG_VERDICT_DENY && cfg && (cfg->flags & BG_CONFIG_FLAG_AUDIT_BLOCKED) &&
        !(o->flags & BG_ROW_QUIET)) {
        o->verdict = BG_VERDICT_DENY;
        o->reason = BG_REASON_AUDIT_BLOCKED;
        o->flags &= ~BG_ROW_AUDIT;
    }
    return o->verdict == BG_VERDICT_DENY ? BG_DECISION_REFUSE : BG_DECISION_ALLOW;
}

/* Whether a redirect to the proxy's port would reach the proxy's own socket: its listeners carry
 * the proxy's mark. No listener at all is left to connect(), which fails and is reported at
 * sock_release; a listener without the mark is a squatter. Checked only on the port the daemon
 * set (reserved_port): scripts/bench points the guard at other relays by hand. */
static __always_inline int reaches_proxy(struct bpf_sock_addr *ctx, const struct bg_orig *o, const struct bg_config *cfg)
{
    if (cfg->proxy_port != cfg->reserved_port)
        return 1;
    struct bpf_sock_tuple t = {};
    struct bpf_sock *sk;
    if (o->dst.family == AF_INET6 && !is_mapped_v4((const __u32 *)o->dst.addr)) {
        t.ipv6.daddr[3] = bpf_htonl(1);
        t.ipv6.dport = bpf_htons(cfg->proxy_port);
        sk = bpf_sk_lookup_tcp(ctx, &t, sizeof(t.ipv6), BPF_F_CURRENT_NETNS, 0);
    } else {
        t.ipv4.daddr = bpf_htonl(0x7f000001);
        t.ipv4.dport = bpf_htons(cfg->proxy_port);
        sk = bpf_sk_lookup_tcp(ctx, &t, sizeof(t.ipv4), BPF_F_CURRENT_NETNS, 0);
    }
    if (!sk)
        return 1;
    int ours = sk->mark == cfg->proxy_mark;
    bpf_sk_release(sk);
    return ours;
}

/*
 * The part of connect4/6 and sendmsg4/6 that does not depend on the family: identity, verdict,
 * counters, the event, and for a redirect the socket's sock_state. `o->dst` is filled by the
 * caller; for BG_ACTION_REDIRECT the proxy's port is cfg->proxy_port (cfg is then set).
 */
static __always_inline enum bg_action intercept(struct bpf_sock_addr *ctx, struct bg_orig *o,
                                                const struct bg_config *cfg, int udp)
{
    __u64 cookie = bpf_get_socket_cookie(ctx);
    fill_identity(&o->id, cookie);
    __u32 mark = 0;
    struct bpf_sock *sk = ctx->sk;
    if (sk)
        mark = sk->mark;
    if (is_proxy_dial(cfg, o, mark, udp)) {
        count(BG_STAT_LOOP_GUARD);
        return BG_ACTION_PROCEED;
    }
    struct bg_cgroup_policy *pol = policy_for_current();
    __u32 table_slot = pol ? pol->table_slot : 0;
    enum bg_decision decision = decide(o, pol, cfg, bpf_get_netns_cookie(ctx), udp);
    /* A socket may connect again after a failed connect: an earlier redirect that never reached
     * the proxy is reported now, and its state does not outlive this verdict. */
    struct bg_orig *st = udp ? 0 : bpf_sk_storage_get(&sock_state, ctx->sk, 0, 0);
    if (st) {
        release_state(st);
        st->verdict = BG_VERDICT_NONE;
        st = 0;
    }
    if (decision == BG_DECISION_ALLOW && o->verdict == BG_VERDICT_REDIRECT && cfg && !reaches_proxy(ctx, o, cfg)) {
        o->verdict = BG_VERDICT_DENY;
        o->reason = BG_REASON_NOT_PROXY;
        decision = BG_DECISION_REFUSE;
    }
    /* Each proxied connection costs the daemon two descriptors: a cgroup or a user holding its
     * limit is refused here, before the proxy is involved (bg_proxy_limits). */
    if (decision == BG_DECISION_ALLOW && o->verdict == BG_VERDICT_REDIRECT && cfg) {
        if (take_proxy_slot(o)) {
            o->flags |= BG_ORIG_COUNTED;
        } else {
            o->verdict = BG_VERDICT_DENY;
            o->reason = BG_REASON_PROXY_LIMIT;
            decision = BG_DECISION_REFUSE;
        }
    }
    if (decision == BG_DECISION_ALLOW && o->verdict == BG_VERDICT_REDIRECT && cfg) {
        st = bpf_sk_storage_get(&sock_state, ctx->sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
        if (!st) {
            /* out of memory: the proxy could not place the connection, so refuse it (fail closed) */
            give_proxy_slot(o);
            o->flags &= ~BG_ORIG_COUNTED;
            o->verdict = BG_VERDICT_DENY;
            o->reason = BG_REASON_NO_STATE;
            decision = BG_DECISION_REFUSE;
        }
    }
    if (!(o->flags & BG_ROW_QUIET)) {
        count(BG_STAT_CONNECT_SEEN);
        account(o, udp);
        /* a redirect is reported by the proxy, or at sock_release if it never got there; refusals
         * are aggregated per process, destination and second */
        if (o->verdict == BG_VERDICT_DENY)
            report_refusal(o, udp ? IPPROTO_UDP : IPPROTO_TCP, table_slot);
        else if (o->verdict != BG_VERDICT_REDIRECT && (!udp || !udp_recently_reported(o)))
            emit(o, udp ? IPPROTO_UDP : IPPROTO_TCP, table_slot);
    }
    if (decision == BG_DECISION_REFUSE)
        return BG_ACTION_REFUSE;
    if (st) {
        *st = *o;
        return BG_ACTION_REDIRECT;
    }
    return BG_ACTION_PROCEED;
}

/* TCP gets every verdict; every other kind of socket (UDP, ICMP echo, raw) gets the UDP verdict,
 * which never redirects: whatever the proxy cannot relay is allowed or refused, not waved through. */
static __always_inline int socket_kind(__u32 type)
{
    return type == SOCK_STREAM ? 0 : 1;
}

#endif
