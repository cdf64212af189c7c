/*
 * scripts/seccomp_cost.c - what a seccomp filter adds to one system call on
 * this kernel (BENCHMARKS.md, "Confinement").
 *
 * Build and run:  gcc -O2 -o seccomp_cost scripts/seccomp_cost.c && ./seccomp_cost [CALLS]
 *
 * Times CALLS (default 1,000,000) calls of recv() on an empty non-blocking
 * socket (EAGAIN) and of ioctl(FIONREAD), best of 5, in CPU time per call,
 * in three child processes:
 *   none     no filter;
 *   cached   a filter that allows everything: the kernel (5.11 and later)
 *            caches "allowed" by call number and never runs it, as it does
 *            for jamd's serving calls; what is left is the filtered
 *            system-call entry;
 *   checked  a filter that allows ioctl only for FIONREAD (an argument
 *            check, as jamd's filter has for ioctl, mmap, openat, ...):
 *            the program runs on each ioctl.
 * Each child stops by itself; the parent waits for it.
 */
#define _GNU_SOURCE
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double cpu_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

static int install(const struct sock_filter *insns, unsigned short len) {
    struct sock_fprog prog = {.len = len, .filter = (struct sock_filter *)insns};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -1;
    return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
}

static void measure(const char *mode, long calls) {
    static const struct sock_filter allow_all[] = {
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    /* ioctl: allowed for FIONREAD only (the low 32 bits of its request);
     * every other call allowed. */
    static const struct sock_filter check_ioctl[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_ioctl, 0, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[1])),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, FIONREAD, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | 1 /* EPERM */),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    int sv[2], waiting;
    char buf[16];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0) {
        perror("socketpair");
        exit(1);
    }
    if ((mode[1] == 'a' && install(allow_all, 1) != 0) ||
        (mode[1] == 'h' && install(check_ioctl, sizeof check_ioctl / sizeof check_ioctl[0]) != 0)) {
        perror("seccomp");
        exit(1);
    }
    for (int which = 0; which < 2; which++) {
        double best = 1e18;
        for (int rep = 0; rep < 5; rep++) {
            double t0 = cpu_ns();
            for (long i = 0; i < calls; i++) {
                if (which == 0)
                    (void)recv(sv[0], buf, sizeof buf, 0);
                else
                    (void)ioctl(sv[0], FIONREAD, &waiting);
            }
            double per = (cpu_ns() - t0) / calls;
            if (per < best) best = per;
        }
        printf("%-8s %-22s %6.1f ns/call\n", mode, which == 0 ? "recv (EAGAIN)" : "ioctl FIONREAD", best);
    }
}

int main(int argc, char **argv) {
    long calls = argc > 1 ? atol(argv[1]) : 1000000;
    if (calls <= 0 || calls > 100000000) {
        fprintf(stderr, "usage: seccomp_cost [CALLS (1..100000000)]\n");
        return 2;
    }
    const char *modes[] = {"none", "cached", "checked"};
    for (int m = 0; m < 3; m++) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 1;
        }
        if (pid == 0) {
            measure(modes[m], calls);
            fflush(stdout);
            _exit(0);
        }
        int status;
        if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return 1;
    }
    return 0;
}
