/* caffegen-launch: exec a command that dies with the process that started it (Linux: PR_SET_PDEATHSIG).
 *
 * SPDX-License-Identifier: BSD-2-Clause
 * Copyright (c) 2026 the caffegen authors.
 *
 * Usage: caffegen-launch SIGNAL PARENT_PID COMMAND [ARGS...]
 *
 * The sweep driver starts every `caffe train` through this: the death signal is set in the child before exec and
 * survives it, so when the driver dies, even by kill -9, the kernel sends SIGNAL (SIGINT: caffe snapshots and
 * stops) to its caffe processes. Linux sends it when the *thread* that forked the child ends: the driver launches
 * from its main thread. If the driver died before the signal was set, the command is not started at all.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s SIGNAL PARENT_PID COMMAND [ARGS...]\n", argv[0]);
        return 127;
    }
    int sig = atoi(argv[1]);
    pid_t parent = (pid_t)atol(argv[2]);
    if (prctl(PR_SET_PDEATHSIG, sig) != 0) {
        perror("caffegen-launch: prctl(PR_SET_PDEATHSIG)");
        return 127;
    }
    if (getppid() != parent) return 127; /* the driver is already gone: start nothing */
    execvp(argv[3], argv + 3);
    perror(argv[3]);
    return 127;
}
