#define _GNU_SOURCE
#include "bordergate_sys.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

// Written in C because the child of a raw clone3 in a multithreaded process may only make
// async-signal-safe calls until it execs; Swift code there could take a lock another thread held.
pid_t bg_spawn_in_cgroup(int cgroup_fd, const char *path, char *const argv[], char *const envp[],
                         unsigned long nofile_soft)
{
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
        if (nofile_soft != 0) {
            struct rlimit lim;
            if (getrlimit(RLIMIT_NOFILE, &lim) == 0) {
                lim.rlim_cur = nofile_soft < lim.rlim_max ? nofile_soft : lim.rlim_max;
                setrlimit(RLIMIT_NOFILE, &lim);
            }
        }
        close(report[0]);
        execve(path, argv, envp);
        int err = errno;
        ssize_t ignored = write(report[1], &err, sizeof(err));
        (void)ignored;
        _exit(127);
    }

    close(report[1]);
    int child_err = 0;
    ssize_t n;
    do {
        n = read(report[0], &child_err, sizeof(child_err));
    } while (n < 0 && errno == EINTR);
    close(report[0]);
    if (n == sizeof(child_err)) {
        // exec failed: reap the child so it leaves no zombie, and hand back its errno
        int status;
        while (waitpid((pid_t)pid, &status, 0) < 0 && errno == EINTR) {
        }
        errno = child_err;
        return -1;
    }
    return (pid_t)pid;
}
