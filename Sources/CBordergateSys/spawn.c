#define _GNU_SOURCE
#include "bordergate_sys.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <linux/capability.h>
#include <sched.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

// Written in C because the child of a raw clone3 in a multithreaded process may only make
// async-signal-safe calls until it execs; Swift code there could take a lock another thread held.
#ifndef AF_XDP
#define AF_XDP 44
#endif
#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif
#ifndef __NR_pidfd_getfd
#define __NR_pidfd_getfd 438
#endif
#if defined(__x86_64__)
#define BG_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define BG_AUDIT_ARCH AUDIT_ARCH_AARCH64
#else
#error "bg_guard_seccomp: add this architecture's AUDIT_ARCH"
#endif

// Classic BPF, because seccomp takes nothing else. Refuses (EPERM) what would let a guarded
// command act outside its cgroup or below the cgroup hooks: taking another process's socket
// (pidfd_getfd), attaching to or writing into another process (ptrace attach/seize,
// process_vm_writev), and packet, XDP and vsock sockets, which the cgroup socket hooks never see.
// System calls of another ABI (i386, x32) are refused whole: their numbers differ.
int bg_guard_seccomp(void)
{
    enum { EPERM_AT = 18 };
#define BG_JEQ_TO(k, at, here) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (k), (at) - (here) - 1, 0)
    struct sock_filter code[] = {
        /* 0 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        /* 1 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, BG_AUDIT_ARCH, 0, EPERM_AT - 2),
        /* 2 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        /* 3 */ BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000u, EPERM_AT - 4, 0), /* x32 */
        /* 4 */ BG_JEQ_TO(__NR_pidfd_getfd, EPERM_AT, 4),
        /* 5 */ BG_JEQ_TO(__NR_process_vm_writev, EPERM_AT, 5),
        /* 6 */ BG_JEQ_TO(__NR_ptrace, 9, 6),
        /* 7 */ BG_JEQ_TO(__NR_socket, 13, 7),
        /* 8 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        /* 9: ptrace(request, ...) */
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
        /* 10 */ BG_JEQ_TO(PTRACE_ATTACH, EPERM_AT, 10),
        /* 11 */ BG_JEQ_TO(0x4206 /* PTRACE_SEIZE */, EPERM_AT, 11),
        /* 12 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        /* 13: socket(family, ...) */
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
        /* 14 */ BG_JEQ_TO(AF_PACKET, EPERM_AT, 14),
        /* 15 */ BG_JEQ_TO(AF_XDP, EPERM_AT, 15),
        /* 16 */ BG_JEQ_TO(AF_VSOCK, EPERM_AT, 16),
        /* 17 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        /* 18 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
    };
#undef BG_JEQ_TO
    _Static_assert(sizeof(code) / sizeof(code[0]) == EPERM_AT + 1, "EPERM_AT is the last instruction");
    struct sock_fprog prog = { .len = (unsigned short)(sizeof(code) / sizeof(code[0])), .filter = code };
    return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
}

// What the child reports through the pipe when it cannot get as far as exec.
struct child_failure {
    int step;
    int err;
};
static const char *const steps[] = { "exec", "setgroups", "setgid", "setuid", "no_new_privs", "seccomp",
                                     "capabilities", "trust" };

// Runs in the child, before privileges are dropped (mounting needs CAP_SYS_ADMIN): its own mount
// namespace, private so nothing propagates back to the host's, with the CA bundle files replaced
// by Bordergate's read-only bundle. Tools read their usual paths and trust the local CA.
static int inject_trust(const struct bg_spawn_options *o)
{
    if (!o->trust_bundle)
        return 0;
    if (unshare(CLONE_NEWNS) != 0)
        return 7;
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        return 7;
    for (int i = 0; i < o->ntrust_targets; i++) {
        if (mount(o->trust_bundle, o->trust_targets[i], NULL, MS_BIND, NULL) != 0)
            return 7;
        // read-only: a tool cannot add its own CA to the view that others in its cgroup share
        if (mount(NULL, o->trust_targets[i], NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL) != 0)
            return 7;
    }
    return 0;
}

// Runs in the child: async-signal-safe calls only. The filter goes on first, while the child
// still has CAP_SYS_ADMIN (seccomp wants it, or no_new_privs, which a command that may run setuid
// binaries does not get); none of the calls after it is one the filter refuses.
static int drop_privileges(const struct bg_spawn_options *o)
{
    if (o->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return 4;
    if (o->seccomp && bg_guard_seccomp() != 0)
        return 5;
    if (o->change_identity) {
        // Raw system calls: glibc's wrappers broadcast the change to every thread it knows of
        // (POSIX process-wide credentials), and in this child of a multithreaded parent those
        // threads do not exist, so the wrapper would wait for them forever.
        if (syscall(SYS_setgroups, (size_t)o->ngroups, o->groups) != 0)
            return 1;
        if (syscall(SYS_setresgid, o->gid, o->gid, o->gid) != 0)
            return 2;
        if (syscall(SYS_setresuid, o->uid, o->uid, o->uid) != 0)
            return 3;
        if (o->uid != 0) {
            // setresuid from root to another uid already emptied the permitted and effective sets;
            // the inheritable and ambient sets are emptied too, so nothing survives an exec.
            struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
            struct __user_cap_data_struct data[2];
            memset(data, 0, sizeof(data));
            if (syscall(SYS_capset, &hdr, data) != 0)
                return 6;
            if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
                return 6;
        }
    }
    return 0;
}

pid_t bg_spawn_in_cgroup(int cgroup_fd, const char *path, char *const argv[], char *const envp[],
                         const struct bg_spawn_options *options, const char **failed_step)
{
    if (failed_step)
        *failed_step = NULL;
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0)
        return -1;

    struct clone_args args;
    memset(&args, 0, sizeof(args));
    args.flags = CLONE_INTO_CGROUP;
    args.exit_signal = SIGCHLD;
    args.cgroup = (uint64_t)cgroup_fd;

    long pid = syscall(SYS_clone3, &args, sizeof(args));
    if (pid < 0) {
        int saved = errno;
        close(report[0]);
        close(report[1]);
        errno = saved;
        return -1;
    }
    if (pid == 0) {
        // The child starts with the parent's signal state; a tool expects the defaults.
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        for (int sig = 1; sig < NSIG; sig++)
            signal(sig, SIG_DFL);
        if (options->nofile_soft != 0) {
            struct rlimit lim;
            if (getrlimit(RLIMIT_NOFILE, &lim) == 0) {
                lim.rlim_cur = options->nofile_soft < lim.rlim_max ? options->nofile_soft : lim.rlim_max;
                setrlimit(RLIMIT_NOFILE, &lim);
            }
        }
        close(report[0]);
        struct child_failure failure = { 0, 0 };
        failure.step = inject_trust(options);
        if (failure.step == 0)
            failure.step = drop_privileges(options);
        if (failure.step == 0)
            execve(path, argv, envp);
        failure.err = errno;
        ssize_t ignored = write(report[1], &failure, sizeof(failure));
        (void)ignored;
        _exit(127);
    }

    close(report[1]);
    struct child_failure failure = { 0, 0 };
    ssize_t n;
    do {
        n = read(report[0], &failure, sizeof(failure));
    } while (n < 0 && errno == EINTR);
    close(report[0]);
    if (n == sizeof(failure)) {
        // the child never ran the command: reap it so it leaves no zombie, and hand back its errno
        int status;
        while (waitpid((pid_t)pid, &status, 0) < 0 && errno == EINTR) {
        }
        if (failed_step && failure.step >= 0 && failure.step < (int)(sizeof(steps) / sizeof(steps[0])))
            *failed_step = steps[failure.step];
        errno = failure.err;
        return -1;
    }
    return (pid_t)pid;
}
