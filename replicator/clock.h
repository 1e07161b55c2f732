/* SPDX-License-Identifier: Apache-2.0 */
/*
 * clock — the clocks every long operation reports: monotonic wall time for
 * durations and rates, the process's CPU time (user + system) for cost, and the
 * wall clock in milliseconds for points in time another machine compares (the
 * consistent point).
 */
#ifndef PVREPL_CLOCK_H
#define PVREPL_CLOCK_H

#include <stdint.h>
#include <sys/resource.h>
#include <time.h>

static inline double clock_mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline double clock_cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static inline int64_t clock_unix_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
