#ifndef BORDERGATE_SYS_H
#define BORDERGATE_SYS_H

#include <sys/types.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <sys/vfs.h>
#include <sys/socket.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <stdint.h>

struct sockaddr;
/// accept4 with SOCK_NONBLOCK | SOCK_CLOEXEC (Swift's Glibc does not declare accept4).
int bg_accept_nonblocking(int listener, struct sockaddr *addr, socklen_t *len);

/// Bytes malloc has handed out and not got back (mallinfo2: arena in use plus mmapped blocks).
unsigned long long bg_heap_in_use(void);

/// Names the calling thread as top -H, ps -L and perf show it (Foundation's Thread.name does not).
void bg_name_thread(const char *name);

/// epoll_event is packed on x86-64; these keep Swift away from its layout.
static inline struct epoll_event bg_epoll_event(uint32_t events, uint64_t data)
{
    struct epoll_event e;
    e.events = events;
    e.data.u64 = data;
    return e;
}
static inline uint32_t bg_epoll_events_at(const struct epoll_event *list, int i) { return list[i].events; }
static inline uint64_t bg_epoll_data_at(const struct epoll_event *list, int i) { return list[i].data.u64; }

/// Reads a u64 that a BPF program updates atomically, through a shared mapping of its map.
static inline uint64_t bg_load_acquire_u64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }

/// Who the spawned command runs as, and what it may not do. Applied in the child, in the cgroup
/// from its start, before exec: no_new_privs, the seccomp filter, then supplementary groups, gid
/// and uid (a non-root uid keeps no capability).
struct bg_spawn_options {
    /// The soft open-file limit the child gets, unless 0 (the caller may have raised its own).
    unsigned long nofile_soft;
    /// Switch to uid/gid/groups; 0 keeps the caller's identity.
    int change_identity;
    uid_t uid;
    gid_t gid;
    const gid_t *groups;
    int ngroups;
    /// Set PR_SET_NO_NEW_PRIVS: setuid and file-capability binaries cannot raise privileges.
    int no_new_privs;
    /// Install Bordergate's seccomp filter (bg_guard_seccomp): no pidfd_getfd, no ptrace attach,
    /// no process_vm_writev, no packet/XDP/vsock sockets.
    int seccomp;
    /// When not NULL: the child gets a private mount namespace in which each of the
    /// `ntrust_targets` paths (the system's CA bundle files) shows this file instead, read-only
    /// (the system bundle plus Bordergate's CA). Nothing outside the child sees it.
    const char *trust_bundle;
    const char *const *trust_targets;
    int ntrust_targets;
};

/// Starts `path` with `argv` and `envp` as a child that is a member of the cgroup open at
/// `cgroup_fd` from its first instruction (clone3 with CLONE_INTO_CGROUP), so nothing it runs can
/// escape the guard. Returns the child's pid, or -1 with errno set; if the child could not exec
/// (or drop its privileges), returns -1 with that errno and `*failed_step` (if not NULL) names the
/// step that failed ("exec", "setgroups", "setgid", "setuid", "no_new_privs", "seccomp",
/// "capabilities", "trust").
pid_t bg_spawn_in_cgroup(int cgroup_fd, const char *path, char *const argv[], char *const envp[],
                         const struct bg_spawn_options *options, const char **failed_step);

/// Installs the seccomp filter described at bg_spawn_options.seccomp on the calling thread
/// (no_new_privs or CAP_SYS_ADMIN needed). 0 on success, -1 with errno.
int bg_guard_seccomp(void);

/// What identifies a file's version: device (st_dev), inode, modification time. Filled by
/// bg_file_identity, which follows symbolic links like stat(2).
struct bg_file_identity {
    uint64_t device;
    uint64_t inode;
    int64_t mtime_sec;
    int64_t mtime_nsec;
};

/// stat(2) reduced to what identifies the file; 0 on success, -1 with errno. In C because the
/// Swift `stat` struct's declaration is owned by whichever module first included <sys/stat.h>
/// (CoreFoundation in one build, Dispatch in another), which MemberImportVisibility then asks for.
static inline int bg_file_identity(const char *path, struct bg_file_identity *out)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return -1;
    out->device = (uint64_t)st.st_dev;
    out->inode = (uint64_t)st.st_ino;
    out->mtime_sec = (int64_t)st.st_mtim.tv_sec;
    out->mtime_nsec = (int64_t)st.st_mtim.tv_nsec;
    return 0;
}

/// CLOCK_MONOTONIC in nanoseconds, the clock of the kernel's event timestamps (bpf_ktime_get_ns).
static inline uint64_t bg_monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#endif
