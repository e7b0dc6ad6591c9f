/* skesl-cma-probe: exits 0 when this kernel lets a process read another's memory with
 * process_vm_readv (Open MPI's single-copy "CMA" shared-memory transfers), 1 otherwise.
 * Built into the bundle by scripts/bundle; its `run` wrapper turns CMA off where this fails
 * (containers with seccomp filters or ptrace restrictions refuse it, and Open MPI then stops
 * the job at its first large message instead of falling back). */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void) {
    static char src[64] = "skesl-cma-probe";
    char dst[64] = {0};
    int fds[2];
    if (pipe(fds) != 0) return 1;
    pid_t pid = fork();
    if (pid < 0) return 1;
    if (pid == 0) {
        /* As Open MPI does: let any process of this user attach (Yama ptrace_scope 1). */
        prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0);
        char c = 'x';
        if (write(fds[1], &c, 1) != 1) _exit(1);
        pause();
        _exit(0);
    }
    char c;
    int ok = read(fds[0], &c, 1) == 1;
    struct iovec local = {dst, sizeof dst}, remote = {src, sizeof src};
    ok = ok && process_vm_readv(pid, &local, 1, &remote, 1, 0) == (ssize_t)sizeof src && strcmp(dst, src) == 0;
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    printf("CMA (process_vm_readv): %s\n", ok ? "ok" : "refused");
    return ok ? 0 : 1;
}
