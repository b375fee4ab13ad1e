/*
 * vmctl-bench: the measurements of docs/performance.md that need to be made
 * from C. Each figure is printed beside its reference, measured in the same
 * run, as a row of a Markdown table:
 *
 *   | figure | vmctl | reference | ratio | target | met |
 *
 * Subcommands:
 *   rtt         request round trip through libvmproto to a helper process,
 *               against a raw 1-byte pipe ping-pong between two processes
 *   throughput  pipelined requests per second, against a raw pipe echo of
 *               messages of the same size with the same number in flight
 *   registry    write an instance registry of N stopped instances, with
 *               their folders
 *   registry-io CPU time of registry_save() and registry_load() of 1,000
 *               records, against writing and reading the same file's bytes
 *   time        run a command R times and print its wall time (ms)
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include <vmproto/proto.h>

#include "vmcommon.h"

#define BENCH_TIMEOUT 10.0 /* seconds a single request may take before we give up */

static double bench_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int bench_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* p in [0, 100] of v[0..n), which is sorted in place. */
static double bench_percentile(double *v, size_t n, double p)
{
	size_t i;

	qsort(v, n, sizeof(*v), bench_cmp_double);
	i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
	return v[i < n ? i : n - 1];
}

/* Pin the calling process (and what it later forks or execs) to one CPU;
 * cpu < 0 lets it run anywhere. */
static int bench_pin(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	if (cpu < 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);

		for (long i = 0; i < n && i < CPU_SETSIZE; i++)
			CPU_SET(i, &set);
	} else {
		CPU_SET(cpu, &set);
	}
	if (sched_setaffinity(0, sizeof(set), &set) < 0) {
		fprintf(stderr, "vmctl-bench: cannot pin to CPU %d: %s\n", cpu, strerror(errno));
		return PROTO_E_IO;
	}
	return 0;
}

/* ---- raw pipes: the floor ---- */

struct bench_child {
	pid_t pid;
	int to;   /* we write here */
	int from; /* we read here */
};

static int bench_read_full(int fd, char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = read(fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return PROTO_E_IO;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static int bench_write_full(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return PROTO_E_IO;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * Fork a child, pinned to cpu, that runs argv (a helper with the protocol
 * on its stdin/stdout) or, with argv NULL, echoes every byte it reads back.
 */
static int bench_spawn(char *const argv[], int cpu, struct bench_child *ch)
{
	int to[2], from[2];

	if (pipe2(to, O_CLOEXEC) < 0)
		return PROTO_E_IO;
	if (pipe2(from, O_CLOEXEC) < 0)
		goto out_close_to;
	ch->pid = fork();
	if (ch->pid < 0)
		goto out_close_from;
	if (ch->pid == 0) {
		char buf[65536];
		ssize_t n;

		/* Our own copies of the parent's ends would keep EOF away. */
		close(to[1]);
		close(from[0]);
		if (cpu >= 0 && bench_pin(cpu) < 0)
			_exit(127);
		if (argv) {
			if (dup2(to[0], STDIN_FILENO) < 0 || dup2(from[1], STDOUT_FILENO) < 0)
				_exit(127);
			execv(argv[0], argv);
			fprintf(stderr, "vmctl-bench: cannot run %s: %s\n", argv[0], strerror(errno));
			_exit(127);
		}
		while ((n = read(to[0], buf, sizeof(buf))) > 0)
			if (bench_write_full(from[1], buf, (size_t)n) < 0)
				break;
		_exit(0);
	}
	close(to[0]);
	close(from[1]);
	ch->to = to[1];
	ch->from = from[0];
	return 0;

out_close_from:
	close(from[0]);
	close(from[1]);
out_close_to:
	close(to[0]);
	close(to[1]);
	return PROTO_E_IO;
}

static void bench_reap(struct bench_child *ch)
{
	if (ch->to >= 0)
		close(ch->to);
	if (ch->from >= 0)
		close(ch->from);
	if (ch->pid > 0)
		waitpid(ch->pid, NULL, 0);
	ch->pid = -1;
	ch->to = ch->from = -1;
}

/* count 1-byte round trips; each one's seconds go to out[] (may be NULL). */
static int bench_raw_pingpong(struct bench_child *ch, size_t count, double *out)
{
	char b = 'x';

	for (size_t i = 0; i < count; i++) {
		double t0 = bench_now();

		if (bench_write_full(ch->to, &b, 1) < 0 || bench_read_full(ch->from, &b, 1) < 0)
			return PROTO_E_IO;
		if (out)
			out[i] = bench_now() - t0;
	}
	return 0;
}

/* count messages of size bytes echoed with window of them in flight;
 * returns messages per second, or a negative code. */
static double bench_raw_stream(struct bench_child *ch, size_t count, size_t size, size_t window)
{
	size_t sent = 0, done = 0, got = 0;
	char *out, in[65536];
	double t0;

	if (window > count)
		window = count;
	out = calloc(window, size);
	if (!out)
		return PROTO_E_NOMEM;
	t0 = bench_now();
	if (bench_write_full(ch->to, out, window * size) < 0)
		goto out_fail;
	sent = window;
	while (done < count) {
		ssize_t n = read(ch->from, in, sizeof(in));
		size_t more;

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			goto out_fail;
		got += (size_t)n;
		more = got / size - done;
		done += more;
		if (more > count - sent)
			more = count - sent;
		if (more && bench_write_full(ch->to, out, more * size) < 0)
			goto out_fail;
		sent += more;
	}
	free(out);
	return (double)count / (bench_now() - t0);

out_fail:
	free(out);
	return PROTO_E_IO;
}

/* ---- libvmproto: a client conn to a helper process ---- */

struct bench_proto {
	struct ev_loop *loop;
	struct bench_child ch;
	struct proto_conn *conn;
	bool closed;
	char why[256];
};

struct bench_wait {
	bool done;
	int err;
	char msg[256];
};

static void bench_wait_cb(void *ud, int err, const char *errmsg, const msgpack_object *result)
{
	struct bench_wait *w = ud;

	w->done = true;
	w->err = err;
	if (err)
		snprintf(w->msg, sizeof(w->msg), "%s", errmsg ? errmsg : proto_strerror(err));
}

static void bench_closed_cb(struct proto_conn *c, void *ud, int err, const char *why)
{
	struct bench_proto *p = ud;

	p->closed = true;
	snprintf(p->why, sizeof(p->why), "%s", why ? why : "");
}

static const struct proto_conn_ops bench_conn_ops = {
	.closed = bench_closed_cb,
};

/* One request, waited for. 0 or the error of the answer. */
static int bench_call(struct bench_proto *p, const char *method, const char *params, size_t len,
		      char *msg, size_t msglen)
{
	struct bench_wait w = {0};
	int ret;

	ret = proto_call(p->conn, method, params, len, BENCH_TIMEOUT, bench_wait_cb, &w, NULL);
	if (ret < 0) {
		snprintf(msg, msglen, "%s", proto_strerror(ret));
		return ret;
	}
	while (!w.done)
		ev_run(p->loop, EVRUN_ONCE);
	if (w.err)
		snprintf(msg, msglen, "%s", w.msg);
	return w.err;
}

static void bench_proto_stop(struct bench_proto *p)
{
	if (p->conn) {
		proto_conn_free(p->conn); /* closes both pipe ends: the helper sees EOF */
		p->conn = NULL;
		p->ch.to = p->ch.from = -1;
	}
	bench_reap(&p->ch);
}

/* Start the helper pinned to cpu and say hello. */
static int bench_proto_start(struct bench_proto *p, const char *helper, int cpu)
{
	char *argv[] = {(char *)helper, NULL};
	char scope_dir[] = "/tmp/vmctl-bench-scope-XXXXXX";
	msgpack_sbuffer sb;
	msgpack_packer pk;
	char msg[256];
	int ret;

	memset(p, 0, sizeof(*p));
	p->ch.pid = -1;
	p->ch.to = p->ch.from = -1;
	p->loop = ev_default_loop(0);
	if (!mkdtemp(scope_dir))
		return PROTO_E_IO;
	ret = bench_spawn(argv, cpu, &p->ch);
	if (ret < 0)
		goto out_rmdir;
	p->conn = proto_conn_new(p->loop, p->ch.from, p->ch.to, &bench_conn_ops, p);
	if (!p->conn) {
		ret = PROTO_E_NOMEM;
		goto out_stop;
	}
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 3);
	proto_pack_str(&pk, "versions");
	msgpack_pack_array(&pk, 1);
	msgpack_pack_int(&pk, PROTO_VERSION);
	proto_pack_kv_str(&pk, "scope_dir", scope_dir);
	proto_pack_str(&pk, "settings");
	msgpack_pack_map(&pk, 0);
	ret = bench_call(p, "hello", sb.data, sb.size, msg, sizeof(msg));
	msgpack_sbuffer_destroy(&sb);
	if (ret < 0) {
		fprintf(stderr, "vmctl-bench: hello to %s failed: %s\n", helper, msg);
		goto out_stop;
	}
	rmdir(scope_dir);
	return 0;

out_stop:
	bench_proto_stop(p);
out_rmdir:
	rmdir(scope_dir);
	return ret;
}

static int bench_proto_pingpong(struct bench_proto *p, size_t count, double *out)
{
	char msg[256];

	for (size_t i = 0; i < count; i++) {
		double t0 = bench_now();
		int ret = bench_call(p, "ping", NULL, 0, msg, sizeof(msg));

		if (ret < 0) {
			fprintf(stderr, "vmctl-bench: ping failed: %s\n", msg);
			return ret;
		}
		if (out)
			out[i] = bench_now() - t0;
	}
	return 0;
}

struct bench_stream {
	struct bench_proto *p;
	size_t count, sent, done;
	int err;
};

static void bench_stream_cb(void *ud, int err, const char *errmsg, const msgpack_object *result);

static int bench_stream_send(struct bench_stream *s)
{
	int ret = proto_call(s->p->conn, "ping", NULL, 0, BENCH_TIMEOUT, bench_stream_cb, s, NULL);

	if (ret < 0)
		return ret;
	s->sent++;
	return 0;
}

static void bench_stream_cb(void *ud, int err, const char *errmsg, const msgpack_object *result)
{
	struct bench_stream *s = ud;

	s->done++;
	if (err && !s->err) {
		s->err = err;
		fprintf(stderr, "vmctl-bench: ping failed: %s\n", errmsg);
	}
	if (!s->err && s->sent < s->count) {
		int ret = bench_stream_send(s);

		if (ret < 0)
			s->err = ret;
	}
}

/* Requests per second with window calls in flight, or a negative code. */
static double bench_proto_stream(struct bench_proto *p, size_t count, size_t window)
{
	struct bench_stream s = {.p = p, .count = count};
	double t0 = bench_now();

	for (size_t i = 0; i < window && i < count; i++) {
		int ret = bench_stream_send(&s);

		if (ret < 0)
			return ret;
	}
	while (!s.err && s.done < s.sent)
		ev_run(p->loop, EVRUN_ONCE);
	if (s.err)
		return s.err;
	return (double)count / (bench_now() - t0);
}

/* Bytes of a "ping" request, [0, id, "ping", {}], with a 32-bit msgid; the
 * raw reference echoes messages of this size. */
#define BENCH_PING_BYTES 13

/* ---- rows ---- */

static void bench_row(const char *figure, const char *ours, const char *ref, double ratio,
		      const char *target, int met)
{
	printf("| %s | %s | %s | %.2fx | %s | %s |\n", figure, ours, ref, ratio, target,
	       met < 0 ? "--" : met ? "yes" : "no");
	fflush(stdout);
}

/* ---- rtt ---- */

static void bench_usage(FILE *f)
{
	fprintf(f,
		"usage: vmctl-bench rtt --helper PATH [--count N] [--cpus A,B]\n"
		"       vmctl-bench throughput --helper PATH [--count N]\n"
		"       vmctl-bench registry DATA_DIR COUNT [SCOPE] [IMAGE]\n"
		"       vmctl-bench registry-io DIR [--count N] [--repeat R]\n"
		"       vmctl-bench time [--repeat R] [--warmup W] -- COMMAND [ARGS...]\n"
		"rtt pins the client to CPU A and the helper to CPU B (A,B; -1 = anywhere).\n"
		"time prints the median, minimum and maximum wall time in milliseconds.\n");
}

static int bench_parse_cpus(const char *text, int *a, int *b)
{
	char *end;

	*a = (int)strtol(text, &end, 10);
	if (*end != ',')
		return PROTO_E_INVALID_ARGUMENT;
	*b = (int)strtol(end + 1, &end, 10);
	return *end ? PROTO_E_INVALID_ARGUMENT : 0;
}

static int bench_cmd_rtt(int argc, char **argv)
{
	static const struct option opts[] = {
		{"helper", required_argument, NULL, 'h'},
		{"count", required_argument, NULL, 'n'},
		{"cpus", required_argument, NULL, 'c'},
		{0},
	};
	const char *helper = NULL, *cpus = "-1,-1";
	size_t count = 20000, rounds = 10, per;
	int cpu_a, cpu_b, opt, ret = 1;
	struct bench_proto p;
	struct bench_child raw = {.pid = -1, .to = -1, .from = -1};
	double *t_raw, *t_proto;
	char label[64], ours[64], ref[64];

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'h': helper = optarg; break;
		case 'n': count = strtoul(optarg, NULL, 10); break;
		case 'c': cpus = optarg; break;
		default: bench_usage(stderr); return 2;
		}
	}
	if (!helper || count < rounds || bench_parse_cpus(cpus, &cpu_a, &cpu_b) < 0) {
		bench_usage(stderr);
		return 2;
	}
	per = count / rounds;
	count = per * rounds;
	t_raw = calloc(count, sizeof(double));
	t_proto = calloc(count, sizeof(double));
	if (!t_raw || !t_proto)
		goto out_free;
	if (bench_pin(cpu_a) < 0)
		goto out_free;
	if (bench_spawn(NULL, cpu_b, &raw) < 0)
		goto out_unpin;
	if (bench_proto_start(&p, helper, cpu_b) < 0)
		goto out_reap_raw;
	/* Warm both paths, then interleave them so that a noisy neighbour
	 * slows both alike. */
	if (bench_raw_pingpong(&raw, 2000, NULL) < 0 || bench_proto_pingpong(&p, 2000, NULL) < 0)
		goto out_stop;
	for (size_t r = 0; r < rounds; r++)
		if (bench_raw_pingpong(&raw, per, t_raw + r * per) < 0 ||
		    bench_proto_pingpong(&p, per, t_proto + r * per) < 0)
			goto out_stop;

	double raw50 = bench_percentile(t_raw, count, 50) * 1e6;
	double raw99 = bench_percentile(t_raw, count, 99) * 1e6;
	double pro50 = bench_percentile(t_proto, count, 50) * 1e6;
	double pro99 = bench_percentile(t_proto, count, 99) * 1e6;
	const char *where = cpu_a < 0 || cpu_b < 0 ? "unpinned" : cpu_a == cpu_b ? "same core"
											  : "two cores";

	snprintf(label, sizeof(label), "helper round trip p50, %s", where);
	snprintf(ours, sizeof(ours), "%.1f us", pro50);
	snprintf(ref, sizeof(ref), "%.1f us (raw pipe)", raw50);
	bench_row(label, ours, ref, pro50 / raw50, "<= 1.5x", pro50 <= 1.5 * raw50);
	snprintf(label, sizeof(label), "helper round trip p99, %s", where);
	snprintf(ours, sizeof(ours), "%.1f us", pro99);
	snprintf(ref, sizeof(ref), "%.1f us (raw pipe)", raw99);
	bench_row(label, ours, ref, pro99 / raw99, "--", -1);
	ret = 0;

out_stop:
	bench_proto_stop(&p);
out_reap_raw:
	bench_reap(&raw);
out_unpin:
	bench_pin(-1);
out_free:
	free(t_raw);
	free(t_proto);
	return ret;
}

static int bench_cmd_throughput(int argc, char **argv)
{
	static const struct option opts[] = {
		{"helper", required_argument, NULL, 'h'},
		{"count", required_argument, NULL, 'n'},
		{0},
	};
	static const size_t windows[] = {1, 16, 64, PROTO_MAX_INFLIGHT};
	const char *helper = NULL;
	size_t count = 200000;
	struct bench_proto p;
	struct bench_child raw = {.pid = -1, .to = -1, .from = -1};
	char label[64], ours[64], ref[64];
	int opt, ret = 1;

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'h': helper = optarg; break;
		case 'n': count = strtoul(optarg, NULL, 10); break;
		default: bench_usage(stderr); return 2;
		}
	}
	if (!helper || count == 0) {
		bench_usage(stderr);
		return 2;
	}
	if (bench_spawn(NULL, -1, &raw) < 0)
		return 1;
	if (bench_proto_start(&p, helper, -1) < 0)
		goto out_reap_raw;
	for (size_t i = 0; i < sizeof(windows) / sizeof(windows[0]); i++) {
		size_t w = windows[i], n = w == 1 ? count / 4 : count;
		double r_raw = bench_raw_stream(&raw, n, BENCH_PING_BYTES, w);
		double r_pro = bench_proto_stream(&p, n, w);

		if (r_raw < 0 || r_pro < 0)
			goto out_stop;
		snprintf(label, sizeof(label), "pipelined pings, %zu in flight", w);
		snprintf(ours, sizeof(ours), "%.0f req/s", r_pro);
		snprintf(ref, sizeof(ref), "%.0f msg/s (raw pipe echo)", r_raw);
		bench_row(label, ours, ref, r_pro / r_raw, "--", -1);
	}
	ret = 0;

out_stop:
	bench_proto_stop(&p);
out_reap_raw:
	bench_reap(&raw);
	return ret;
}

/* ---- registry ---- */

static int bench_cmd_registry(int argc, char **argv)
{
	const char *data, *scope = "qemu", *image = "/nonexistent/bench.qcow2";
	struct registry reg = {0};
	char path[PATH_MAX], name[32];
	unsigned long n;
	int ret;

	if (argc < 3 || argc > 5) {
		bench_usage(stderr);
		return 2;
	}
	data = argv[1];
	n = strtoul(argv[2], NULL, 10);
	if (argc > 3)
		scope = argv[3];
	if (argc > 4)
		image = argv[4];
	snprintf(path, sizeof(path), "%s/scopes/%s", data, scope);
	ret = mkdir_p(path, 0700);
	if (ret < 0) {
		fprintf(stderr, "vmctl-bench: cannot create %s: %s\n", path, proto_strerror(ret));
		return 1;
	}
	for (unsigned long i = 0; i < n; i++) {
		struct instance_record *rec;
		char mac[32];

		snprintf(name, sizeof(name), "bench-%05lu", i);
		snprintf(mac, sizeof(mac), "52:54:00:%02lx:%02lx:%02lx", (i >> 16) & 0xff,
			 (i >> 8) & 0xff, i & 0xff);
		/* The broker lists only instances whose folder exists. */
		snprintf(path, sizeof(path), "%s/scopes/%s/instances/%s", data, scope, name);
		ret = mkdir_p(path, 0700);
		if (ret < 0)
			goto out_free;
		rec = registry_add(&reg, name);
		if (rec)
			rec->state = PROTO_STATE_STOPPED;
		if (!rec || record_set(&rec->image, "file:///nonexistent/bench.qcow2") < 0 ||
		    record_set(&rec->image_disk, image) < 0 ||
		    record_set(&rec->image_format, "qcow2") < 0 ||
		    record_set(&rec->mac, mac) < 0 ||
		    record_set(&rec->created, "2026-01-01T00:00:00Z") < 0) {
			ret = PROTO_E_NOMEM;
			goto out_free;
		}
		rec->cpus = 1;
		rec->memory = MIN_MEMORY;
		rec->disk = MIN_DISK;
	}
	snprintf(path, sizeof(path), "%s/scopes/%s/instances.yaml", data, scope);
	ret = registry_save(path, &reg);
out_free:
	registry_free(&reg);
	if (ret < 0) {
		fprintf(stderr, "vmctl-bench: cannot write %s: %s\n", path, proto_strerror(ret));
		return 1;
	}
	return 0;
}

/* ---- registry-io ---- */

/* Each record has every field set, every tenth a mount: the shape of the
 * registry of an instance of each kind. */
static int bench_fill_registry(struct registry *reg, unsigned long n)
{
	for (unsigned long i = 0; i < n; i++) {
		char name[32], text[128];
		struct instance_record *rec;

		snprintf(name, sizeof(name), "vm-%lu", i);
		rec = registry_add(reg, name);
		if (!rec)
			return PROTO_E_NOMEM;
		snprintf(text, sizeof(text), "/var/lib/vmctl/images/%064lu.qcow2", i);
		rec->state = i % 2 ? PROTO_STATE_RUNNING : PROTO_STATE_STOPPED;
		rec->switch_state = PROTO_STATE_SUSPENDED;
		rec->has_switch_state = true;
		if (record_set(&rec->image, "24.04") < 0 || record_set(&rec->image_disk, text) < 0 ||
		    record_set(&rec->image_format, "qcow2") < 0 ||
		    record_set(&rec->image_kernel, "/boot/vmlinuz") < 0 ||
		    record_set(&rec->image_initrd, "/boot/initrd.img") < 0 ||
		    record_set(&rec->image_cmdline, "console=ttyS0 root=/dev/vda1 quiet") < 0 ||
		    record_set(&rec->created, "2026-11-27T10:00:00Z") < 0)
			return PROTO_E_NOMEM;
		snprintf(text, sizeof(text), "%064lx", i);
		if (record_set(&rec->image_sha256, text) < 0)
			return PROTO_E_NOMEM;
		snprintf(text, sizeof(text), "52:54:00:00:%02lx:%02lx", (i >> 8) & 0xff, i & 0xff);
		if (record_set(&rec->mac, text) < 0)
			return PROTO_E_NOMEM;
		rec->cpus = 1 + (uint32_t)(i % 8);
		rec->memory = (1ull << 30) + i;
		rec->disk = (5ull << 30) + i;
		rec->deleted = i % 3 == 0;
		if (i % 10 == 0) {
			struct mount_record *m = calloc(1, sizeof(*m));

			if (!m || record_set(&m->source, "/home/dev/src") < 0 ||
			    record_set(&m->target, "/src") < 0 ||
			    record_set(&m->uid_map, "1000:1000") < 0 ||
			    record_set(&m->gid_map, "1000:1000") < 0) {
				free(m);
				return PROTO_E_NOMEM;
			}
			rec->mounts = m;
			rec->n_mounts = 1;
		}
	}
	return 0;
}

static double bench_cpu_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/*
 * CPU time, not wall time: the disk's fsync latency and other processes on a
 * busy host are not this code's cost. The references do the I/O alone: the
 * same bytes written with atomic_write_file() (temp file, fsync, rename, as
 * registry_save() does), and read back with read_file(). The target is the
 * budget the registry was written to: 50 ms each at 1,000 records.
 */
static int bench_cmd_registry_io(int argc, char **argv)
{
	static const struct option opts[] = {
		{"count", required_argument, NULL, 'n'},
		{"repeat", required_argument, NULL, 'r'},
		{0},
	};
	unsigned long count = 1000;
	size_t repeat = 20, len = 0;
	struct registry reg = {0};
	char path[PATH_MAX], copy[PATH_MAX], figure[96], ours[64], ref[96];
	double *t_save = NULL, *t_write = NULL, *t_load = NULL, *t_read = NULL;
	char *text = NULL;
	int opt, ret = 1;

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'n': count = strtoul(optarg, NULL, 10); break;
		case 'r': repeat = strtoul(optarg, NULL, 10); break;
		default: bench_usage(stderr); return 2;
		}
	}
	if (optind + 1 != argc || repeat == 0 || count == 0) {
		bench_usage(stderr);
		return 2;
	}
	snprintf(path, sizeof(path), "%s/instances.yaml", argv[optind]);
	snprintf(copy, sizeof(copy), "%s/instances.bytes", argv[optind]);
	t_save = calloc(repeat, sizeof(double));
	t_write = calloc(repeat, sizeof(double));
	t_load = calloc(repeat, sizeof(double));
	t_read = calloc(repeat, sizeof(double));
	if (!t_save || !t_write || !t_load || !t_read || bench_fill_registry(&reg, count) < 0 ||
	    registry_save(path, &reg) < 0 || read_file(path, 1u << 30, &text, &len) < 0) {
		fprintf(stderr, "vmctl-bench: cannot write %s\n", path);
		goto out_free;
	}
	for (size_t i = 0; i < repeat; i++) {
		struct registry back = {0};
		char *bytes = NULL, err[512];
		size_t n = 0;
		double t0, t1, t2, t3, t4;

		t0 = bench_cpu_ms();
		if (registry_save(path, &reg) < 0)
			goto out_free;
		t1 = bench_cpu_ms();
		if (atomic_write_file(copy, text, len, 0600) < 0)
			goto out_free;
		t2 = bench_cpu_ms();
		if (registry_load_err(path, &back, err, sizeof(err)) < 0 || back.n != count) {
			fprintf(stderr, "vmctl-bench: %s did not load back: %s\n", path, err);
			registry_free(&back);
			goto out_free;
		}
		t3 = bench_cpu_ms();
		if (read_file(copy, 1u << 30, &bytes, &n) < 0) {
			registry_free(&back);
			goto out_free;
		}
		t4 = bench_cpu_ms();
		free(bytes);
		registry_free(&back);
		t_save[i] = t1 - t0;
		t_write[i] = t2 - t1;
		t_load[i] = t3 - t2;
		t_read[i] = t4 - t3;
	}
	{
		double save = bench_percentile(t_save, repeat, 50);
		double wrote = bench_percentile(t_write, repeat, 50);
		double load = bench_percentile(t_load, repeat, 50);
		double got = bench_percentile(t_read, repeat, 50);

		snprintf(figure, sizeof(figure), "registry save, %lu records (CPU)", count);
		snprintf(ours, sizeof(ours), "%.2f ms", save);
		snprintf(ref, sizeof(ref), "%.2f ms (atomic_write_file of the same %zu bytes)", wrote, len);
		bench_row(figure, ours, ref, wrote > 0 ? save / wrote : 0, "<= 50 ms", save <= 50);
		snprintf(figure, sizeof(figure), "registry load, %lu records (CPU)", count);
		snprintf(ours, sizeof(ours), "%.2f ms", load);
		snprintf(ref, sizeof(ref), "%.2f ms (read_file of the same bytes)", got);
		bench_row(figure, ours, ref, got > 0 ? load / got : 0, "<= 50 ms", load <= 50);
	}
	ret = 0;
out_free:
	unlink(copy);
	unlink(path);
	registry_free(&reg);
	free(text);
	free(t_save);
	free(t_write);
	free(t_load);
	free(t_read);
	return ret;
}

/* ---- time ---- */

/* Run argv once, its stdout to /dev/null. Seconds, or a negative code. */
static double bench_run_once(char **argv)
{
	double t0 = bench_now();
	int status;
	pid_t pid = fork();

	if (pid < 0)
		return PROTO_E_IO;
	if (pid == 0) {
		int null_fd = open("/dev/null", O_WRONLY);

		if (null_fd < 0 || dup2(null_fd, STDOUT_FILENO) < 0)
			_exit(127);
		execvp(argv[0], argv);
		fprintf(stderr, "vmctl-bench: cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return PROTO_E_IO;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "vmctl-bench: %s failed (status %d)\n", argv[0],
			WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
		return PROTO_E_DRIVER;
	}
	return bench_now() - t0;
}

static int bench_cmd_time(int argc, char **argv)
{
	static const struct option opts[] = {
		{"repeat", required_argument, NULL, 'r'},
		{"warmup", required_argument, NULL, 'w'},
		{0},
	};
	size_t repeat = 20, warmup = 2;
	double *t;
	int opt;

	while ((opt = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		switch (opt) {
		case 'r': repeat = strtoul(optarg, NULL, 10); break;
		case 'w': warmup = strtoul(optarg, NULL, 10); break;
		default: bench_usage(stderr); return 2;
		}
	}
	if (optind >= argc || repeat == 0) {
		bench_usage(stderr);
		return 2;
	}
	t = calloc(repeat, sizeof(*t));
	if (!t)
		return 1;
	for (size_t i = 0; i < warmup + repeat; i++) {
		double s = bench_run_once(argv + optind);

		if (s < 0) {
			free(t);
			return 1;
		}
		if (i >= warmup)
			t[i - warmup] = s * 1e3;
	}
	double p50 = bench_percentile(t, repeat, 50);
	printf("%.3f %.3f %.3f\n", p50, t[0], t[repeat - 1]);
	free(t);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		bench_usage(stderr);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if (!strcmp(argv[1], "rtt"))
		return bench_cmd_rtt(argc - 1, argv + 1);
	if (!strcmp(argv[1], "throughput"))
		return bench_cmd_throughput(argc - 1, argv + 1);
	if (!strcmp(argv[1], "registry"))
		return bench_cmd_registry(argc - 1, argv + 1);
	if (!strcmp(argv[1], "registry-io"))
		return bench_cmd_registry_io(argc - 1, argv + 1);
	if (!strcmp(argv[1], "time"))
		return bench_cmd_time(argc - 1, argv + 1);
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		bench_usage(stdout);
		return 0;
	}
	fprintf(stderr, "vmctl-bench: unknown subcommand %s\n", argv[1]);
	bench_usage(stderr);
	return 2;
}
