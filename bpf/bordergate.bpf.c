// SPDX-License-Identifier: GPL-2.0
/*
 * Bordergate's kernel side: catch the outbound connects of guarded cgroups, remember who made them
 * and where they were going, and steer them into the user-space proxy. Every hook is in this
 * file; the helpers they share are in lib/ (maps.h, addr.h, identity.h, events.h, verdict.h), the
 * kernel/user contract in include/bordergate_abi.h.
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
 * Hardening (the ways around the verdicts, refused with EPERM in guarded cgroups): sockets the
 * verdict hooks cannot see (sock_create, socket_post_create), binds of the proxy's port (bind4|6),
 * source routes (setsockopt), and redirects of sockets outside the proxy's network namespace.
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
#include "lib/maps.h"
#include "lib/addr.h"
#include "lib/identity.h"
#include "lib/events.h"
#include "lib/verdict.h"

char LICENSE[] SEC("license") = "GPL";

struct socket;

static __always_inline int handle4(struct bpf_sock_addr *ctx, int udp)
{
    struct bg_orig o = {};
    set_mapped_v4(o.dst.addr, ctx->user_ip4);
    o.dst.port = bpf_ntohs(ctx->user_port);
    o.dst.family = AF_INET;

    struct bg_config *cfg = config_get();
    enum bg_action action = intercept(ctx, &o, cfg, udp);
    if (action == BG_ACTION_REFUSE)
        return 0;
    if (action == BG_ACTION_REDIRECT && cfg) {
        ctx->user_ip4 = bpf_htonl(0x7f000001);
        ctx->user_port = bpf_htons(cfg->proxy_port);
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

    struct bg_config *cfg = config_get();
    enum bg_action action = intercept(ctx, &o, cfg, udp);
    if (action == BG_ACTION_REFUSE)
        return 0;
    if (action == BG_ACTION_REDIRECT && cfg) {
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
        ctx->user_port = bpf_htons(cfg->proxy_port);
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
 * sockets could reach a forbidden destination without a verdict, so they fail with EPERM (other
 * families: socket_post_create below). */
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

/* Packet, XDP and vsock sockets send frames that no verdict hook sees (they bypass the IP stack
 * or leave it), so a guarded cgroup may not create them. cgroup/sock_create runs for inet sockets
 * only: this is the socket LSM hook, run for the creating socket's cgroup (BPF_LSM_CGROUP, 6.0). */
SEC("lsm_cgroup/socket_post_create")
int BPF_PROG(bg_socket_post_create, struct socket *sock, int family, int type, int protocol, int kern)
{
    if (kern)
        return 1; /* the kernel's own sockets */
    if (family == AF_PACKET || family == AF_XDP || family == AF_VSOCK) {
        count(BG_STAT_SOCKETS_REFUSED);
        return 0;
    }
    return 1;
}

/* No guarded process may listen where redirected connects go: it would receive them while its
 * peers' tools still saw their original destination. The proxy itself is exempt by process id and
 * its mark together: a guarded process could inherit a killed daemon's pid, and setting the mark
 * needs CAP_NET_ADMIN. */
static __always_inline int bind_allowed(struct bpf_sock_addr *ctx)
{
    struct bg_config *cfg = config_get();
    if (!cfg)
        return 1;
    __u16 port = bpf_ntohs(ctx->user_port);
    if (port == 0 || (port != cfg->proxy_port && port != cfg->reserved_port))
        return 1;
    if (cfg->proxy_tgid != 0 && cfg->proxy_tgid == bpf_get_current_pid_tgid() >> 32 &&
        ctx->sk->mark == cfg->proxy_mark)
        return 1;
    count(BG_STAT_SOCKETS_REFUSED);
    return 0;
}

SEC("cgroup/bind4")
int bg_bind4(struct bpf_sock_addr *ctx)
{
    return bind_allowed(ctx);
}

SEC("cgroup/bind6")
int bg_bind6(struct bpf_sock_addr *ctx)
{
    return bind_allowed(ctx);
}

/* Source routes: connect() names an allowed destination and the packets visit another one first,
 * which no verdict hook sees. IPv6 routing headers (set directly, the RFC 2292 way, or in a
 * packet-options block) and IPv4 options (which carry LSRR/SSRR) are refused with EPERM. */
SEC("cgroup/setsockopt")
int bg_setsockopt(struct bpf_sockopt *ctx)
{
    int level = ctx->level, name = ctx->optname;
    if ((level == IPPROTO_IPV6 && (name == IPV6_RTHDR || name == IPV6_2292RTHDR || name == IPV6_2292PKTOPTIONS))
        || (level == IPPROTO_IP && name == IP_OPTIONS)) {
        count(BG_STAT_SOCKETS_REFUSED);
        return 0;
    }
    /* past a page the program sees only the first one: 0 tells the kernel to use the caller's buffer */
    if (ctx->optlen > BG_PAGE_SIZE)
        ctx->optlen = 0;
    return 1;
}

/* Whether a packet (from its network header: cgroup_skb sees it there) carries an IPv6 routing
 * header or an IPv4 loose or strict source route. Bounded walks: at most 6 IPv6 extension headers
 * (more is no packet a tool needs: treated as routed) and 40 bytes of IPv4 options. */
static __always_inline int source_routed(struct __sk_buff *skb)
{
    if (skb->protocol == bpf_htons(0x86DD)) {
        __u8 next;
        if (bpf_skb_load_bytes(skb, 6, &next, 1))
            return 1; /* not even a whole IPv6 header: nothing to vouch for */
        __u32 off = 40;
#pragma unroll
        for (int i = 0; i < 6; i++) {
            if (next == 43) /* IPPROTO_ROUTING */
                return 1;
            /* hop-by-hop, destination options, fragment, authentication */
            if (next != 0 && next != 60 && next != 44 && next != 51)
                return 0;
            __u8 h[2];
            if (bpf_skb_load_bytes(skb, off, h, 2))
                return 1; /* a header announced and not there: fail closed */
            off += next == 44 ? 8 : next == 51 ? ((__u32)h[1] + 2) * 4 : ((__u32)h[1] + 1) * 8;
            next = h[0];
        }
        return 1;
    }
    if (skb->protocol == bpf_htons(0x0800)) {
        __u8 vihl;
        if (bpf_skb_load_bytes(skb, 0, &vihl, 1))
            return 0;
        __u32 ihl = (__u32)(vihl & 0xf) * 4, off = 20;
#pragma unroll
        for (int i = 0; i < 40; i++) {
            if (off >= ihl || off >= 60)
                return 0;
            __u8 opt[2];
            if (bpf_skb_load_bytes(skb, off, opt, 1))
                return 1; /* options announced by the header length and not there */
            if (opt[0] == 0) /* end of options */
                return 0;
            if (opt[0] == 1) { /* no-op */
                off += 1;
                continue;
            }
            if (opt[0] == 0x83 || opt[0] == 0x89) /* LSRR, SSRR */
                return 1;
            if (bpf_skb_load_bytes(skb, off, opt, 2) || opt[1] < 2)
                return 1; /* a malformed option: not worth the doubt */
            off += opt[1];
        }
        return 0;
    }
    return 0;
}

/* The last line behind bg_setsockopt: a routing header or source route that reaches a packet
 * another way (sendmsg control data: IPV6_RTHDR, IP_RETOPTS) is dropped before it leaves, and
 * counted; the sender gets EPERM. */
SEC("cgroup_skb/egress")
int bg_egress(struct __sk_buff *skb)
{
    if (!source_routed(skb))
        return 1;
    __u32 zero = 0;
    __u64 *n = bpf_map_lookup_elem(&skb_drops, &zero);
    if (n)
        *n += 1;
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
    /* the file executed, whatever path named it */
    struct file *file = bprm->file;
    if (file) {
        proc.exe_ino = file->f_inode->i_ino;
        proc.exe_dev = file->f_inode->i_sb->s_dev;
    }
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
        proc.exe_ino = pp->exe_ino;
        proc.exe_dev = pp->exe_dev;
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
