/*
 * The lxd driver's methods. Each request becomes a job: its LXD calls run
 * on a thread of the SDK's (vmh_work, job_work), its answer, the claim's
 * release and the state notifications on the loop's thread (job_done).
 *
 * The helper keeps nothing of its own beyond the SDK's states: an instance
 * is the LXD container of the same name, marked user.vmctl.dir with the
 * instance folder, so that a container vmctl did not create is never
 * deleted. States come from the answers and from a poll of LXD, run at
 * once when LXD's event stream (events.c) says an instance changed, and
 * every LXD_POLL_INTERVAL seconds while that stream is down.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <ev.h>

#include "lxd.h"

#define LXD_POLL_INTERVAL 5.0         /* without LXD's events */
#define LXD_POLL_EVENTS_INTERVAL 60.0 /* with them: a safety net */
#define LXD_SHORT 30.0        /* state, info, list */
#define LXD_HELLO_CHECK 1.0   /* the socket's check before the hello's answer */
#define LXD_LONG 600.0        /* image import, create */
#define LXD_ADDRESS_WAIT 120.0 /* a start waits this long for eth0's address */
#define LXD_IPV4_MAX 8
#define LXD_CONFIG_TEXT_MAX (1u << 20)

static char lxd_socket[4096];
static ev_timer poll_timer;
static bool poll_running, poll_again;
static ev_tstamp poll_last;

enum job_kind {
	JOB_CREATE,
	JOB_START,
	JOB_STOP,
	JOB_RESTART,
	JOB_DELETE,
	JOB_STATE,
	JOB_INFO,
	JOB_LIST,
	JOB_NETWORKS,
	JOB_POLL,
	JOB_MOUNT,
	JOB_UMOUNT,
	JOB_EXEC,
};

struct list_entry {
	char name[PROTO_NAME_MAX + 1];
	enum proto_state state;
	char ipv4[64];
	bool missing;
	char reason[PROTO_REASON_MAX + 1]; /* why state is unknown, or "" */
};

struct job {
	enum job_kind kind;
	struct vmh_req *req;  /* NULL for the poll */
	struct vmh_instance inst;
	bool have_inst, claimed;
	bool force;
	bool escalate; /* stop: force a container that does not stop within timeout */
	int64_t timeout;
	int err;
	char msg[1024];
	enum proto_state state;
	bool missing; /* the LXD instance does not exist */
	char reason[PROTO_REASON_MAX + 1]; /* why state is what it is, or "" */
	char ipv4[LXD_IPV4_MAX][64];
	size_t n_ipv4;
	int64_t pid;
	struct list_entry *list;
	size_t n_list;
	json_t *networks; /* JOB_NETWORKS: [{name, type, description}] */
	struct vmh_mount mount; /* JOB_MOUNT: the one to add; JOB_UMOUNT: its target */
	bool have_mount;
	struct lxd_exec exec; /* JOB_EXEC */
	bool have_exec;
	char type_setting[16];   /* JOB_CREATE: local.lxd.instance-type */
	char instance_type[32];  /* JOB_INFO: LXD's "container" or "virtual-machine" */
};

static void job_free(struct job *j)
{
	if (j->have_inst)
		vmh_instance_free(&j->inst);
	if (j->have_mount)
		vmh_mount_free(&j->mount);
	if (j->have_exec)
		lxd_exec_free(&j->exec);
	free(j->list);
	json_decref(j->networks);
	free(j);
}

static void job_fail(struct job *j, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void job_fail(struct job *j, int err, const char *fmt, ...)
{
	va_list ap;

	j->err = err;
	va_start(ap, fmt);
	vsnprintf(j->msg, sizeof(j->msg), fmt, ap);
	va_end(ap);
}

static int job_fail_rc(struct job *j, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* job_fail(), returning err. */
static int job_fail_rc(struct job *j, int err, const char *fmt, ...)
{
	va_list ap;

	j->err = err;
	va_start(ap, fmt);
	vsnprintf(j->msg, sizeof(j->msg), fmt, ap);
	va_end(ap);
	return err;
}

/* ---- on the work thread ---- */

/* GET /1.0/instances/NAME/state into state, addresses and pid; a missing
 * instance is j->missing with state unknown, not an error. */
static int query_state(struct job *j)
{
	struct lxd_resp r;
	char path[256];
	int rc;

	snprintf(path, sizeof(path), "/1.0/instances/%s/state", j->inst.name);
	rc = lxd_call(lxd_socket, "GET", path, NULL, NULL, LXD_SHORT, &r, j->msg, sizeof(j->msg));
	if (rc == PROTO_E_NOT_FOUND) {
		j->missing = true;
		j->state = PROTO_STATE_UNKNOWN;
		snprintf(j->msg, sizeof(j->msg), "LXD has no instance %s (deleted outside vmctl?)",
			 j->inst.name);
		snprintf(j->reason, sizeof(j->reason), "%s", j->msg);
		lxd_resp_free(&r);
		return 0;
	}
	if (rc < 0) {
		j->err = rc;
		lxd_resp_free(&r);
		return rc;
	}
	j->missing = false;
	j->reason[0] = '\0';
	j->state = lxd_state_of(json_string_value(json_object_get(r.metadata, "status")));
	j->n_ipv4 = lxd_state_ipv4(r.metadata, j->ipv4, LXD_IPV4_MAX);
	j->pid = json_integer_value(json_object_get(r.metadata, "pid"));
	lxd_resp_free(&r);
	return 0;
}

/* PUT /1.0/instances/NAME/state {action, timeout, force}, awaited. */
static int change_state(struct job *j, const char *action, int timeout, bool force)
{
	struct lxd_resp r;
	char path[256], *body;
	json_t *req = json_pack("{s:s, s:i, s:b}", "action", action, "timeout", timeout, "force", force);
	int rc;

	body = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req);
	if (!body) {
		job_fail(j, PROTO_E_NOMEM, "out of memory");
		return j->err;
	}
	snprintf(path, sizeof(path), "/1.0/instances/%s/state", j->inst.name);
	rc = lxd_sync(lxd_socket, "PUT", path, body, NULL, timeout > 0 ? timeout + 30 : LXD_LONG, &r,
		      j->msg, sizeof(j->msg));
	free(body);
	lxd_resp_free(&r);
	if (rc < 0)
		j->err = rc;
	return rc;
}

/* After a start: LXD says running at once, the guest's DHCP comes later,
 * and the broker reaches the instance at the address info gives. */
static void wait_for_address(struct job *j)
{
	struct timespec pause = { 0, 250 * 1000 * 1000 };
	time_t until = time(NULL) + (time_t)LXD_ADDRESS_WAIT;

	while (query_state(j) == 0 && j->state == PROTO_STATE_RUNNING && j->n_ipv4 == 0 &&
	       time(NULL) < until)
		nanosleep(&pause, NULL);
	if (j->err == 0 && j->state == PROTO_STATE_RUNNING && j->n_ipv4 == 0)
		vmh_log(VMH_WARN, "%s has no IPv4 address after %.0f s", j->inst.name, LXD_ADDRESS_WAIT);
}

/* The image in LXD by its fingerprint (a unified tarball's is its sha256),
 * imported once. */
static int ensure_image(struct job *j, char fp[65])
{
	struct lxd_resp r;
	char path[128];
	int rc;

	rc = lxd_sha256_file(j->inst.image.disk, fp, j->msg, sizeof(j->msg));
	if (rc < 0)
		return j->err = rc;
	snprintf(path, sizeof(path), "/1.0/images/%s", fp);
	rc = lxd_call(lxd_socket, "GET", path, NULL, NULL, LXD_SHORT, &r, j->msg, sizeof(j->msg));
	lxd_resp_free(&r);
	if (rc == 0)
		return 0;
	if (rc != PROTO_E_NOT_FOUND)
		return j->err = rc;
	vmh_log(VMH_INFO, "importing %s into LXD (fingerprint %.12s)", j->inst.image.disk, fp);
	rc = lxd_sync(lxd_socket, "POST", "/1.0/images", NULL, j->inst.image.disk, LXD_LONG, &r,
		      j->msg, sizeof(j->msg));
	lxd_resp_free(&r);
	if (rc < 0) {
		char why[sizeof(j->msg)];

		snprintf(why, sizeof(why), "%s", j->msg);
		job_fail(j, rc, "LXD could not import the image %s: %s", j->inst.image.disk, why);
	}
	return rc;
}

/* The pool of the default profile's root disk ("default" if none). */
static void root_pool(char *pool, size_t len)
{
	struct lxd_resp r;
	char err[256];
	const char *p = NULL;

	if (lxd_call(lxd_socket, "GET", "/1.0/profiles/default", NULL, NULL, LXD_SHORT, &r, err,
		     sizeof(err)) == 0)
		p = json_string_value(
			json_object_get(json_object_get(json_object_get(r.metadata, "devices"), "root"),
					"pool"));
	snprintf(pool, len, "%s", p ? p : "default");
	lxd_resp_free(&r);
}

/* DIR/file, or NULL when it does not exist; j->err on another failure. */
static char *read_seed_file(struct job *j, const char *file)
{
	char path[PROTO_DIR_MAX + 64];
	struct stat st;
	char *text;
	FILE *f;

	if (vmh_instance_file(&j->inst, file, path, sizeof(path)) < 0)
		return NULL;
	f = fopen(path, "rb");
	if (!f) {
		if (errno != ENOENT)
			job_fail(j, PROTO_E_IO, "cannot read %s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fileno(f), &st) < 0 || st.st_size > LXD_CONFIG_TEXT_MAX) {
		job_fail(j, PROTO_E_INVALID_ARGUMENT, "%s is larger than %u bytes", path,
			 LXD_CONFIG_TEXT_MAX);
		fclose(f);
		return NULL;
	}
	text = calloc(1, (size_t)st.st_size + 1);
	if (text && fread(text, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
		job_fail(j, PROTO_E_IO, "cannot read %s", path);
		free(text);
		text = NULL;
	}
	fclose(f);
	return text;
}

/*
 * The container's vmctl-mount-* disk devices and raw.idmap made those of
 * the instance map's mounts, with the mount of a JOB_MOUNT added or the
 * target of a JOB_UMOUNT left out: one PUT of the instance's config, which
 * LXD applies to a running container at once (devices) or from its next
 * start (raw.idmap). A running container whose raw.idmap lacks a map the
 * mounts need is refused rather than given a mount the map does not hold.
 */
static int sync_mounts(struct job *j)
{
	const struct vmh_mount **want;
	struct lxd_resp r = { 0 };
	char path[256], idmap[4096];
	const char *cur, *status;
	json_t *config, *devices, *put = NULL;
	char *body = NULL;
	bool changed, running;
	size_t n = 0;
	int rc;

	want = calloc(j->inst.n_mounts + 1, sizeof(*want));
	if (!want) {
		job_fail(j, PROTO_E_NOMEM, "out of memory");
		return j->err;
	}
	for (size_t i = 0; i < j->inst.n_mounts; i++) {
		const struct vmh_mount *m = &j->inst.mounts[i];

		if (j->have_mount && m->target && !strcmp(m->target, j->mount.target))
			continue; /* unmounted, or mounted again */
		if (m->target)
			want[n++] = m;
	}
	if (j->kind == JOB_MOUNT)
		want[n++] = &j->mount;
	for (size_t i = 0; i < n; i++) {
		struct stat st;

		if (stat(want[i]->source, &st) < 0 || !S_ISDIR(st.st_mode)) {
			rc = job_fail_rc(j, PROTO_E_NOT_FOUND, "instance '%s': mount source %s is not a folder",
					 j->inst.name, want[i]->source);
			goto out_free;
		}
	}
	rc = lxd_mounts_idmap(want, n, idmap, sizeof(idmap), j->msg, sizeof(j->msg));
	if (rc == 0)
		rc = lxd_mounts_check_ids(want, n, "/etc/subuid", "/etc/subgid", j->msg, sizeof(j->msg));
	if (rc < 0) {
		j->err = rc;
		goto out_free;
	}
	snprintf(path, sizeof(path), "/1.0/instances/%s", j->inst.name);
	rc = lxd_call(lxd_socket, "GET", path, NULL, NULL, LXD_SHORT, &r, j->msg, sizeof(j->msg));
	if (rc < 0) {
		j->err = rc;
		goto out_free;
	}
	status = json_string_value(json_object_get(r.metadata, "status"));
	j->state = lxd_state_of(status);
	running = j->state != PROTO_STATE_STOPPED;
	config = json_object_get(r.metadata, "config");
	devices = json_object_get(r.metadata, "devices");
	if (!json_is_object(config) || !json_is_object(devices)) {
		rc = job_fail_rc(j, PROTO_E_DRIVER, "LXD's answer for %s has no config or devices",
				 j->inst.name);
		goto out_free;
	}
	changed = lxd_mounts_apply(devices, want, n);
	cur = json_string_value(json_object_get(config, "raw.idmap"));
	if (!cur)
		cur = "";
	if (strcmp(cur, idmap) != 0) {
		if (running && !lxd_idmap_covers(cur, idmap)) {
			rc = job_fail_rc(j, PROTO_E_INVALID_STATE,
					 "%s is running: the id maps of its mounts (LXD's raw.idmap) "
					 "take effect when the container starts; stop it first",
					 j->inst.name);
			goto out_free;
		}
		if (!running) {
			if (idmap[0])
				json_object_set_new(config, "raw.idmap", json_string(idmap));
			else
				json_object_del(config, "raw.idmap");
			changed = true;
		}
	}
	if (!changed)
		goto out_free;
	put = json_pack("{s:O, s:O, s:O, s:O?, s:O?, s:O?}", "architecture",
			json_object_get(r.metadata, "architecture"), "config", config, "devices", devices,
			"profiles", json_object_get(r.metadata, "profiles"), "ephemeral",
			json_object_get(r.metadata, "ephemeral"), "description",
			json_object_get(r.metadata, "description"));
	body = put ? json_dumps(put, JSON_COMPACT) : NULL;
	if (!body) {
		rc = job_fail_rc(j, PROTO_E_NOMEM, "out of memory");
		goto out_free;
	}
	lxd_resp_free(&r);
	rc = lxd_sync(lxd_socket, "PUT", path, body, NULL, LXD_LONG, &r, j->msg, sizeof(j->msg));
	if (rc < 0)
		j->err = rc;
out_free:
	free(body);
	json_decref(put);
	lxd_resp_free(&r);
	free(want);
	return rc;
}

/*
 * Whether LXD can run virtual machines: its instance drivers (GET /1.0,
 * environment.driver: "lxc | qemu") name qemu. When they do not, LXD keeps
 * the reason to its log; a create of an empty VM (which LXD refuses before
 * making anything) brings it out, into why. arch: LXD's architecture.
 */
static bool vm_usable(char *arch, size_t archlen, char *why, size_t whylen)
{
	struct lxd_resp r;
	const char *driver, *karch;
	char name[64], path[128], *body;
	json_t *probe;
	bool usable;
	int rc;

	rc = lxd_call(lxd_socket, "GET", "/1.0", NULL, NULL, LXD_SHORT, &r, why, whylen);
	if (rc < 0) {
		lxd_resp_free(&r);
		return false;
	}
	driver = json_string_value(
		json_object_get(json_object_get(r.metadata, "environment"), "driver"));
	karch = json_string_value(
		json_object_get(json_object_get(r.metadata, "environment"), "kernel_architecture"));
	snprintf(arch, archlen, "%s", karch ? karch : "x86_64");
	usable = driver && strstr(driver, "qemu");
	if (!usable)
		snprintf(why, whylen, "LXD's instance drivers are '%s', without qemu",
			 driver ? driver : "");
	lxd_resp_free(&r);
	if (usable)
		return true;
	snprintf(name, sizeof(name), "vmctl-vm-probe-%ld", (long)getpid());
	probe = json_pack("{s:s, s:s, s:{s:s}}", "name", name, "type", "virtual-machine", "source",
			  "type", "none");
	body = probe ? json_dumps(probe, JSON_COMPACT) : NULL;
	json_decref(probe);
	if (!body)
		return false;
	rc = lxd_sync(lxd_socket, "POST", "/1.0/instances", body, NULL, LXD_SHORT, &r, why, whylen);
	free(body);
	lxd_resp_free(&r);
	if (rc == 0) {
		/* It could after all: the empty VM goes again. */
		snprintf(path, sizeof(path), "/1.0/instances/%s", name);
		lxd_sync(lxd_socket, "DELETE", path, NULL, NULL, LXD_SHORT, &r, why, whylen);
		lxd_resp_free(&r);
		return true;
	}
	return false;
}

/* The kind of instance create makes, from local.lxd.instance-type and the
 * image: 0 with *vm, or the refusal in j. arch: for a VM's image. */
static int choose_type(struct job *j, bool *vm, char *arch, size_t archlen)
{
	const char *setting = j->type_setting[0] ? j->type_setting : "auto";
	const char *img = j->inst.image.disk, *format = j->inst.image.format;
	bool tarball = !strcmp(format, "lxd");
	char why[768];

	*vm = false;
	if (!strcasecmp(setting, "container") || (tarball && strcasecmp(setting, "vm"))) {
		if (tarball)
			return 0;
		return job_fail_rc(j, PROTO_E_INVALID_ARGUMENT,
				   "the lxd driver runs container images (an LXD unified tarball: "
				   "metadata.yaml and rootfs/, as tools/build-lxd-image.sh makes) with "
				   "local.lxd.instance-type=container; %s is a %s disk",
				   img, format);
	}
	if (tarball)
		return job_fail_rc(j, PROTO_E_INVALID_ARGUMENT,
				   "local.lxd.instance-type=vm makes LXD virtual machines from a qcow2 "
				   "disk; %s is an LXD container tarball (use instance-type container or "
				   "auto)", img);
	if (!vm_usable(arch, archlen, why, sizeof(why))) {
		if (!strcasecmp(setting, "vm"))
			return job_fail_rc(j, PROTO_E_UNSUPPORTED,
					   "local.lxd.instance-type=vm: LXD on %s cannot run virtual "
					   "machines: %s", lxd_socket, why);
		return job_fail_rc(j, PROTO_E_INVALID_ARGUMENT,
				   "the lxd driver runs container images here (an LXD unified tarball: "
				   "metadata.yaml and rootfs/, as tools/build-lxd-image.sh makes); %s is "
				   "a %s disk, which needs an LXD virtual machine, and LXD on %s cannot "
				   "run them: %s", img, format, lxd_socket, why);
	}
	if (strcmp(format, "qcow2"))
		return job_fail_rc(j, PROTO_E_INVALID_ARGUMENT,
				   "LXD virtual machines are made from qcow2 disks; %s is a %s disk",
				   img, format);
	*vm = true;
	return 0;
}

static void work_create(struct job *j)
{
	char fp[65] = "", pool[128], num[32], arch[32] = "", sha[65];
	char *user_data = NULL, *vendor_data = NULL, *network_config = NULL, *body = NULL;
	json_t *config, *devices, *req;
	struct lxd_resp r;
	bool vm;
	int rc;

	if (choose_type(j, &vm, arch, sizeof(arch)) < 0)
		return;
	if (query_state(j) < 0)
		return;
	if (!j->missing) {
		job_fail(j, PROTO_E_ALREADY_EXISTS, "LXD already has an instance named %s",
			 j->inst.name);
		return;
	}
	user_data = read_seed_file(j, "user-data");
	vendor_data = j->err ? NULL : read_seed_file(j, "vendor-data");
	network_config = j->err ? NULL : read_seed_file(j, "network-config");
	if (j->err)
		goto out_free;
	if (vm) {
		rc = lxd_sha256_file(j->inst.image.disk, sha, j->msg, sizeof(j->msg));
		if (rc == 0)
			rc = lxd_vm_image_ensure(lxd_socket, j->inst.image.disk, sha, arch, LXD_LONG, fp,
						 j->msg, sizeof(j->msg));
		if (rc < 0) {
			j->err = rc;
			goto out_free;
		}
	} else if (ensure_image(j, fp) < 0) {
		goto out_free;
	}
	root_pool(pool, sizeof(pool));

	config = json_object();
	devices = json_object();
	snprintf(num, sizeof(num), "%u", j->inst.cpus);
	json_object_set_new(config, "limits.cpu", json_string(num));
	snprintf(num, sizeof(num), "%llu", (unsigned long long)j->inst.memory);
	json_object_set_new(config, "limits.memory", json_string(num));
	json_object_set_new(config, "user.vmctl.dir", json_string(j->inst.dir));
	/* vmctl's images and most cloud images are not signed for LXD's keys. */
	if (vm)
		json_object_set_new(config, "security.secureboot", json_string("false"));
	if (j->inst.mac)
		json_object_set_new(config, "volatile.eth0.hwaddr", json_string(j->inst.mac));
	if (user_data)
		json_object_set_new(config, "cloud-init.user-data", json_string(user_data));
	if (vendor_data)
		json_object_set_new(config, "cloud-init.vendor-data", json_string(vendor_data));
	if (network_config)
		json_object_set_new(config, "cloud-init.network-config", json_string(network_config));
	json_object_set_new(devices, "root", json_pack("{s:s, s:s, s:s}", "type", "disk", "path", "/",
						      "pool", pool));
	if (j->inst.disk) {
		snprintf(num, sizeof(num), "%llu", (unsigned long long)j->inst.disk);
		json_object_set_new(json_object_get(devices, "root"), "size", json_string(num));
	}
	for (size_t i = 0; i < j->inst.n_networks; i++) {
		char dev[32];
		json_t *nic;

		snprintf(dev, sizeof(dev), "extra%zu", i);
		nic = json_pack("{s:s, s:s, s:s, s:s}", "type", "nic", "nictype", "bridged", "parent",
				j->inst.networks[i].name, "name", dev);
		if (nic && j->inst.networks[i].mac)
			json_object_set_new(nic, "hwaddr", json_string(j->inst.networks[i].mac));
		json_object_set_new(devices, dev, nic);
	}
	req = json_pack("{s:s, s:s, s:{s:s, s:s}, s:o, s:o}", "name", j->inst.name, "type",
			vm ? "virtual-machine" : "container",
			"source", "type", "image", "fingerprint", fp, "config", config, "devices",
			devices);
	body = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req);
	if (!body) {
		job_fail(j, PROTO_E_NOMEM, "out of memory");
		goto out_free;
	}
	rc = lxd_sync(lxd_socket, "POST", "/1.0/instances", body, NULL, LXD_LONG, &r, j->msg,
		      sizeof(j->msg));
	lxd_resp_free(&r);
	if (rc < 0)
		j->err = rc;
	else
		j->state = PROTO_STATE_STOPPED;
out_free:
	free(body);
	free(user_data);
	free(vendor_data);
	free(network_config);
}

static void work_start(struct job *j)
{
	if (query_state(j) < 0)
		return;
	if (j->missing) {
		job_fail(j, PROTO_E_NOT_FOUND, "%s", j->msg);
		return;
	}
	/* The record's mounts are the truth: a device lost or left behind is put right. */
	if (sync_mounts(j) < 0)
		return;
	if (j->state != PROTO_STATE_RUNNING && change_state(j, "start", 60, false) < 0)
		return;
	wait_for_address(j);
}

static void work_stop(struct job *j)
{
	int timeout = j->timeout > 0 ? (int)j->timeout : 60;

	if (query_state(j) < 0)
		return;
	if (j->missing) {
		job_fail(j, PROTO_E_NOT_FOUND, "%s", j->msg);
		return;
	}
	if (j->state == PROTO_STATE_STOPPED)
		return;
	if (j->force || change_state(j, "stop", timeout, false) < 0) {
		if (!j->force && !j->escalate) {
			char why[sizeof(j->msg)];

			snprintf(why, sizeof(why), "%s", j->msg);
			job_fail(j, PROTO_E_DRIVER, "%s did not stop within %d s (%s); left running",
				 j->inst.name, timeout, why);
			return;
		}
		if (!j->force)
			vmh_log(VMH_WARN, "%s did not stop within %d s (%s); stopping it by force",
				j->inst.name, timeout, j->msg);
		j->err = 0;
		if (change_state(j, "stop", -1, true) < 0)
			return;
	}
	query_state(j);
}

static void work_restart(struct job *j)
{
	int timeout = j->timeout > 0 ? (int)j->timeout : 60;

	if (query_state(j) < 0)
		return;
	if (j->missing) {
		job_fail(j, PROTO_E_NOT_FOUND, "%s", j->msg);
		return;
	}
	if (j->state != PROTO_STATE_RUNNING) {
		if (change_state(j, "start", 60, false) < 0)
			return;
	} else if (change_state(j, "restart", timeout, false) < 0) {
		vmh_log(VMH_WARN, "%s did not restart within %d s (%s); restarting it by force",
			j->inst.name, timeout, j->msg);
		j->err = 0;
		if (change_state(j, "restart", -1, true) < 0)
			return;
	}
	wait_for_address(j);
}

static void work_delete(struct job *j)
{
	struct lxd_resp r;
	const char *dir;
	char path[256];
	int rc;

	snprintf(path, sizeof(path), "/1.0/instances/%s", j->inst.name);
	rc = lxd_call(lxd_socket, "GET", path, NULL, NULL, LXD_SHORT, &r, j->msg, sizeof(j->msg));
	if (rc == PROTO_E_NOT_FOUND) { /* gone already: nothing to remove */
		lxd_resp_free(&r);
		j->msg[0] = '\0';
		return;
	}
	if (rc < 0) {
		j->err = rc;
		lxd_resp_free(&r);
		return;
	}
	dir = json_string_value(json_object_get(json_object_get(r.metadata, "config"), "user.vmctl.dir"));
	if (!dir || strcmp(dir, j->inst.dir) != 0) {
		job_fail(j, PROTO_E_INVALID_STATE,
			 "the LXD instance %s was not created by vmctl for %s; it is left alone",
			 j->inst.name, j->inst.dir);
		lxd_resp_free(&r);
		return;
	}
	lxd_resp_free(&r);
	if (query_state(j) < 0)
		return;
	if (j->state != PROTO_STATE_STOPPED && change_state(j, "stop", -1, true) < 0)
		return;
	rc = lxd_sync(lxd_socket, "DELETE", path, NULL, NULL, LXD_LONG, &r, j->msg, sizeof(j->msg));
	lxd_resp_free(&r);
	if (rc < 0 && rc != PROTO_E_NOT_FOUND)
		j->err = rc;
}

/* Every instance LXD has, by name (recursion=2 brings their states). */
static void work_list(struct job *j)
{
	struct lxd_resp r;
	char err[512];
	size_t i;
	json_t *it;

	if (j->n_list == 0)
		return; /* nothing to ask LXD */
	for (i = 0; i < j->n_list; i++) {
		j->list[i].state = PROTO_STATE_UNKNOWN;
		j->list[i].missing = true;
		snprintf(j->list[i].reason, sizeof(j->list[i].reason),
			 "LXD has no instance %s (deleted outside vmctl?)", j->list[i].name);
	}
	if (lxd_call(lxd_socket, "GET", j->kind == JOB_POLL ? "/1.0/instances?recursion=1"
							    : "/1.0/instances?recursion=2",
		     NULL, NULL, LXD_SHORT, &r, err, sizeof(err)) < 0) {
		/* A daemon that is away makes the instances unknown, not the list fail. */
		for (i = 0; i < j->n_list; i++) {
			j->list[i].missing = false;
			snprintf(j->list[i].reason, sizeof(j->list[i].reason),
				 "LXD is not reachable: %s", err);
		}
		snprintf(j->msg, sizeof(j->msg), "%s", err);
		lxd_resp_free(&r);
		return;
	}
	json_array_foreach(r.metadata, i, it) {
		const char *name = json_string_value(json_object_get(it, "name"));

		for (size_t k = 0; name && k < j->n_list; k++) {
			struct list_entry *e = &j->list[k];
			char ip[1][64];

			if (strcmp(e->name, name))
				continue;
			e->missing = false;
			e->reason[0] = '\0';
			e->state = lxd_state_of(json_string_value(json_object_get(it, "status")));
			if (lxd_state_ipv4(json_object_get(it, "state"), ip, 1) == 1)
				snprintf(e->ipv4, sizeof(e->ipv4), "%s", ip[0]);
		}
	}
	lxd_resp_free(&r);
}

/* The state, and whether LXD runs it as a container or a virtual machine. */
static void work_info(struct job *j)
{
	struct lxd_resp r;
	char path[256], err[256];
	const char *type;

	if (query_state(j) < 0 || j->missing)
		return;
	snprintf(path, sizeof(path), "/1.0/instances/%s", j->inst.name);
	if (lxd_call(lxd_socket, "GET", path, NULL, NULL, LXD_SHORT, &r, err, sizeof(err)) == 0 &&
	    (type = json_string_value(json_object_get(r.metadata, "type"))))
		snprintf(j->instance_type, sizeof(j->instance_type), "%s", type);
	lxd_resp_free(&r);
}

static void work_networks(struct job *j)
{
	struct lxd_resp r;
	size_t i;
	json_t *it;

	if (lxd_call(lxd_socket, "GET", "/1.0/networks?recursion=1", NULL, NULL, LXD_SHORT, &r, j->msg,
		     sizeof(j->msg)) < 0) {
		j->err = PROTO_E_DRIVER;
		lxd_resp_free(&r);
		return;
	}
	j->networks = json_array();
	json_array_foreach(r.metadata, i, it) {
		const char *type = json_string_value(json_object_get(it, "type"));
		const char *name = json_string_value(json_object_get(it, "name"));
		const char *desc = json_string_value(json_object_get(it, "description"));
		bool managed = json_is_true(json_object_get(it, "managed"));
		char text[256];

		if (!type || strcmp(type, "bridge") || !name)
			continue;
		snprintf(text, sizeof(text), "%s%s", managed ? "LXD bridge" : "host bridge",
			 desc && desc[0] ? "" : "");
		json_array_append_new(j->networks, json_pack("{s:s, s:s, s:s}", "name", name, "type",
							     "bridge", "description",
							     desc && desc[0] ? desc : text));
	}
	lxd_resp_free(&r);
}

static void job_work(void *arg)
{
	struct job *j = arg;

	switch (j->kind) {
	case JOB_CREATE: work_create(j); break;
	case JOB_START: work_start(j); break;
	case JOB_STOP: work_stop(j); break;
	case JOB_RESTART: work_restart(j); break;
	case JOB_DELETE: work_delete(j); break;
	case JOB_STATE: query_state(j); break;
	case JOB_INFO: work_info(j); break;
	case JOB_LIST:
	case JOB_POLL: work_list(j); break;
	case JOB_NETWORKS: work_networks(j); break;
	case JOB_MOUNT:
	case JOB_UMOUNT: sync_mounts(j); break;
	case JOB_EXEC: j->err = lxd_exec_run(lxd_socket, &j->exec, j->msg, sizeof(j->msg)); break;
	}
}

/* ---- on the loop's thread ---- */

static void poll_now(void);

static void pack_ipv4(msgpack_packer *pk, const struct job *j)
{
	msgpack_pack_str(pk, 4);
	msgpack_pack_str_body(pk, "ipv4", 4);
	msgpack_pack_array(pk, (uint32_t)j->n_ipv4);
	for (size_t i = 0; i < j->n_ipv4; i++)
		proto_pack_str(pk, j->ipv4[i]);
}

static void done_list(struct job *j)
{
	msgpack_packer *pk = vmh_result(j->req);

	msgpack_pack_map(pk, 1);
	proto_pack_str(pk, "instances");
	msgpack_pack_array(pk, (uint32_t)j->n_list);
	for (size_t i = 0; i < j->n_list; i++) {
		struct list_entry *e = &j->list[i];
		enum proto_state busy;

		if (vmh_busy(e->name, &busy)) {
			e->state = busy;
			e->reason[0] = '\0';
		} else {
			vmh_state_seen_why(e->name, e->state, e->reason);
		}
		if (e->missing)
			vmh_log(VMH_WARN, "%s: LXD has no such instance (deleted outside vmctl?)",
				e->name);
		msgpack_pack_map(pk, 2 + (e->ipv4[0] ? 1 : 0) + (e->reason[0] ? 1 : 0));
		proto_pack_kv_str(pk, "name", e->name);
		proto_pack_kv_state(pk, "state", e->state);
		if (e->reason[0])
			proto_pack_kv_str(pk, "reason", e->reason);
		if (e->ipv4[0]) {
			proto_pack_str(pk, "ipv4");
			msgpack_pack_array(pk, 1);
			proto_pack_str(pk, e->ipv4);
		}
	}
	vmh_done(j->req);
}

static void done_poll(struct job *j)
{
	for (size_t i = 0; i < j->n_list; i++) {
		struct list_entry *e = &j->list[i];
		enum proto_state last;

		if (vmh_busy(e->name, NULL) || !vmh_state_last(e->name, &last))
			continue;
		if (e->missing && last != PROTO_STATE_UNKNOWN)
			vmh_log(VMH_WARN, "%s: LXD has no such instance any more (deleted outside vmctl?)",
				e->name);
		vmh_state_notify_why(e->name, e->state, e->reason);
	}
	poll_running = false;
	if (poll_again) {
		poll_again = false;
		poll_now();
	}
}

static void job_done(void *arg)
{
	struct job *j = arg;
	msgpack_packer *pk;

	if (j->kind == JOB_POLL) {
		done_poll(j);
		job_free(j);
		return;
	}
	if (j->claimed)
		vmh_busy_release(j->inst.name);
	if (j->kind == JOB_LIST) {
		done_list(j);
		job_free(j);
		return;
	}
	if (j->kind == JOB_NETWORKS) {
		if (j->err) {
			vmh_fail(j->req, j->err, "%s", j->msg);
		} else {
			pk = vmh_result(j->req);
			msgpack_pack_map(pk, 1);
			proto_pack_str(pk, "networks");
			msgpack_pack_array(pk, (uint32_t)json_array_size(j->networks));
			for (size_t i = 0; i < json_array_size(j->networks); i++) {
				json_t *n = json_array_get(j->networks, i);

				msgpack_pack_map(pk, 3);
				proto_pack_kv_str(pk, "name", json_string_value(json_object_get(n, "name")));
				proto_pack_kv_str(pk, "type", "bridge");
				proto_pack_kv_str(pk, "description",
						  json_string_value(json_object_get(n, "description")));
			}
			vmh_done(j->req);
		}
		job_free(j);
		return;
	}
	if (j->kind == JOB_EXEC) {
		/* A command changes no state: nothing to notify. */
		if (j->err) {
			vmh_fail(j->req, j->err, "%s", j->msg);
		} else {
			lxd_exec_pack(vmh_result(j->req), &j->exec);
			vmh_done(j->req);
		}
		job_free(j);
		return;
	}
	if (j->err) {
		/* What LXD says now is still the instance's state. */
		if (j->kind != JOB_CREATE && (j->state != PROTO_STATE_UNKNOWN || j->missing))
			vmh_state_notify_why(j->inst.name, j->state, j->reason);
		vmh_fail(j->req, j->err, "%s", j->msg);
		job_free(j);
		return;
	}
	if (j->kind == JOB_DELETE) {
		vmh_state_forget(j->inst.name);
		pk = vmh_result(j->req);
		msgpack_pack_map(pk, 0);
		vmh_done(j->req);
		job_free(j);
		return;
	}
	if (j->missing)
		vmh_log(VMH_WARN, "%s", j->msg);
	vmh_state_notify_why(j->inst.name, j->state, j->reason);
	pk = vmh_result(j->req);
	if (j->kind == JOB_CREATE || j->kind == JOB_MOUNT || j->kind == JOB_UMOUNT) {
		msgpack_pack_map(pk, 0);
	} else if (j->kind == JOB_INFO) {
		msgpack_pack_map(pk, (j->n_ipv4 ? 5 : 3) + (j->reason[0] ? 1 : 0) +
					     (j->instance_type[0] ? 1 : 0));
		proto_pack_kv_state(pk, "state", j->state);
		if (j->reason[0])
			proto_pack_kv_str(pk, "reason", j->reason);
		if (j->instance_type[0])
			proto_pack_kv_str(pk, "instance_type", j->instance_type);
		pack_ipv4(pk, j);
		proto_pack_str(pk, "pid");
		msgpack_pack_int64(pk, j->pid);
		if (j->n_ipv4) {
			proto_pack_kv_str(pk, "ssh_host", j->ipv4[0]);
			proto_pack_str(pk, "ssh_port");
			msgpack_pack_int(pk, 22);
		}
	} else {
		msgpack_pack_map(pk, 1);
		proto_pack_kv_state(pk, "state", j->state);
	}
	vmh_done(j->req);
	job_free(j);
}

static void job_run(struct job *j)
{
	int rc = vmh_work(job_work, job_done, j);

	if (rc == 0)
		return;
	if (j->claimed)
		vmh_busy_release(j->inst.name);
	if (j->req)
		vmh_fail(j->req, rc, "could not start a thread for the LXD call");
	else
		poll_running = false;
	job_free(j);
}

/* An instance request: parsed, claimed (claim_state, or none for
 * PROTO_STATE_UNKNOWN), then run. */
static void instance_job(struct vmh_req *req, const msgpack_object *params, enum job_kind kind,
			 enum proto_state claim_state)
{
	struct job *j = calloc(1, sizeof(*j));
	enum proto_state busy;
	char err[256];
	int rc;

	if (!j) {
		vmh_fail(req, PROTO_E_NOMEM, "out of memory");
		return;
	}
	j->kind = kind;
	j->req = req;
	if (vmh_instance_from_req(req, params, "instance", &j->inst) < 0) {
		free(j);
		return;
	}
	j->have_inst = true;
	proto_get_bool(params, "force", &j->force);
	j->escalate = true;
	proto_get_bool(params, "escalate", &j->escalate);
	proto_get_int(params, "timeout", &j->timeout);
	if (kind == JOB_EXEC) {
		rc = lxd_exec_parse(params, &j->exec, err, sizeof(err));
		if (rc < 0) {
			vmh_fail(req, rc, "%s", err);
			job_free(j);
			return;
		}
		j->exec.name = j->inst.name;
		j->have_exec = true;
	}
	if (kind == JOB_MOUNT || kind == JOB_UMOUNT) {
		rc = vmh_mount_parse(proto_map_get(params, "mount"), &j->mount, err, sizeof(err));
		if (rc == 0 && !j->mount.target) {
			snprintf(err, sizeof(err), "the mount of %s needs a 'target' in the guest",
				 j->mount.source);
			vmh_mount_free(&j->mount);
			rc = PROTO_E_INVALID_ARGUMENT;
		}
		if (rc < 0) {
			vmh_fail(req, rc, "%s", err);
			job_free(j);
			return;
		}
		j->have_mount = true;
		/* A change shows the state the instance is in meanwhile. */
		if (!vmh_state_last(j->inst.name, &claim_state) || claim_state == PROTO_STATE_UNKNOWN)
			claim_state = PROTO_STATE_STOPPED;
	}
	if (claim_state != PROTO_STATE_UNKNOWN) {
		rc = vmh_busy_claim(j->inst.name, claim_state, err, sizeof(err));
		if (rc < 0) {
			vmh_fail(req, rc, "%s", err);
			job_free(j);
			return;
		}
		j->claimed = true;
	} else if ((kind == JOB_STATE || kind == JOB_INFO) && vmh_busy(j->inst.name, &busy) &&
		   kind == JOB_STATE) {
		/* An operation in progress answers its own state. */
		msgpack_packer *pk = vmh_result(req);

		msgpack_pack_map(pk, 1);
		proto_pack_kv_state(pk, "state", busy);
		vmh_done(req);
		job_free(j);
		return;
	}
	if (kind == JOB_CREATE)
		snprintf(j->type_setting, sizeof(j->type_setting), "%s",
			 vmh_setting("local.lxd.instance-type", "auto"));
	job_run(j);
}

void lxd_instance_create(struct vmh_req *req, const msgpack_object *params)
{
	instance_job(req, params, JOB_CREATE, PROTO_STATE_STOPPED);
}

void lxd_instance_start(struct vmh_req *req, const msgpack_object *params)
{
	instance_job(req, params, JOB_START, PROTO_STATE_STARTING);
}

void lxd_instance_stop(struct vmh_req *req, const msgpack_object *params)
{
	instance_job(req, params, JOB_STOP, PROTO_STATE_STOPPING);
}

void lxd_instance_restart(struct vmh_req *req, const msgpack_object *params)
{
	instance_job(req, params, JOB_RESTART, PROTO_STATE_RESTARTING);
}

void lxd_instance_delete(struct vmh_req *req, const msgpack_object *params)
{
	instance_job(req, params, JOB_DELETE, PROTO_STATE_STOPPING);
}

void lxd_instance_mount(struct vmh_req *req, const msgpack_object *params)
{
	instance_job(req, params, JOB_MOUNT, PROTO_STATE_STOPPED);
}

void lxd_instance_umount(struct vmh_req *req, const msgpack_object *params)
{
	instance_job(req, params, JOB_UMOUNT, PROTO_STATE_STOPPED);
}

/* Not claimed: a command runs beside whatever else the instance does. */
void lxd_instance_exec(struct vmh_req *req, const msgpack_object *params)
{
	instance_job(req, params, JOB_EXEC, PROTO_STATE_UNKNOWN);
}

void lxd_instance_state(struct vmh_req *req, const msgpack_object *params)
{
	instance_job(req, params, JOB_STATE, PROTO_STATE_UNKNOWN);
}

void lxd_instance_info(struct vmh_req *req, const msgpack_object *params)
{
	instance_job(req, params, JOB_INFO, PROTO_STATE_UNKNOWN);
}

void lxd_instances_list(struct vmh_req *req, const msgpack_object *params)
{
	const msgpack_object *arr = proto_map_get(params, "instances");
	struct job *j;
	uint32_t n;

	if (!arr || arr->type != MSGPACK_OBJECT_ARRAY) {
		vmh_fail(req, PROTO_E_INVALID_ARGUMENT, "'instances' must be an array of instance maps");
		return;
	}
	n = arr->via.array.size;
	j = calloc(1, sizeof(*j));
	if (!j || !(j->list = calloc(n ? n : 1, sizeof(*j->list)))) {
		free(j);
		vmh_fail(req, PROTO_E_NOMEM, "out of memory");
		return;
	}
	j->kind = JOB_LIST;
	j->req = req;
	for (uint32_t i = 0; i < n; i++) {
		if (proto_get_str(&arr->via.array.ptr[i], "name", j->list[i].name,
				  sizeof(j->list[i].name)) < 0) {
			vmh_fail(req, PROTO_E_INVALID_ARGUMENT, "instance %u of 'instances' has no name", i);
			job_free(j);
			return;
		}
	}
	j->n_list = n;
	job_run(j);
}

void lxd_networks_list(struct vmh_req *req, const msgpack_object *params)
{
	struct job *j = calloc(1, sizeof(*j));

	(void)params;
	if (!j) {
		vmh_fail(req, PROTO_E_NOMEM, "out of memory");
		return;
	}
	j->kind = JOB_NETWORKS;
	j->req = req;
	job_run(j);
}

/* ---- the poll ---- */

struct poll_names {
	struct list_entry *list;
	size_t n, cap;
};

static void poll_collect(void *ud, const char *name, enum proto_state state)
{
	struct poll_names *p = ud;

	(void)state;
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 16;
		struct list_entry *grown = realloc(p->list, cap * sizeof(*grown));

		if (!grown)
			return;
		p->list = grown;
		p->cap = cap;
	}
	memset(&p->list[p->n], 0, sizeof(p->list[0]));
	snprintf(p->list[p->n].name, sizeof(p->list[0].name), "%s", name);
	p->n++;
}

/* Ask LXD for the states of the instances the broker knows, now (or once
 * the poll under way has ended). */
static void poll_now(void)
{
	struct poll_names names = { 0 };
	struct job *j;

	if (poll_running) {
		poll_again = true;
		return;
	}
	poll_last = ev_now(vmh_loop());
	vmh_state_each(poll_collect, &names);
	if (names.n == 0) {
		free(names.list);
		return;
	}
	j = calloc(1, sizeof(*j));
	if (!j) {
		free(names.list);
		return;
	}
	j->kind = JOB_POLL;
	j->list = names.list;
	j->n_list = names.n;
	poll_running = true;
	job_run(j);
}

static void on_poll(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)t;
	(void)revents;
	/* With LXD's events, the poll only catches what they might have missed. */
	if (lxd_events_connected() && ev_now(loop) - poll_last < LXD_POLL_EVENTS_INTERVAL)
		return;
	poll_now();
}

/* An event: the instance's state is asked for at once. */
static void on_event(const char *name, const char *action)
{
	(void)action;
	if (name && !vmh_state_last(name, NULL))
		return; /* not one of the broker's */
	poll_now();
}

/* ---- start-up ---- */

int lxd_init(const char *scope_dir, const msgpack_object *settings, char *why, size_t whylen)
{
	static const char *const types[] = { "auto", "vm", "container", NULL };
	const char *sock = vmh_setting("local.lxd.socket", "");
	struct lxd_resp r;
	const char *version, *driver;
	int type, rc;

	(void)scope_dir;
	(void)settings;
	if (vmh_setting_enum("local.lxd.instance-type", types, 0, &type, why, whylen) < 0)
		return PROTO_E_UNAVAILABLE;
	if (sock[0])
		snprintf(lxd_socket, sizeof(lxd_socket), "%s", sock);
	else if (access("/var/snap/lxd/common/lxd/unix.socket", F_OK) == 0)
		snprintf(lxd_socket, sizeof(lxd_socket), "/var/snap/lxd/common/lxd/unix.socket");
	else
		snprintf(lxd_socket, sizeof(lxd_socket), "/var/lib/lxd/unix.socket");
	if (curl_global_init(CURL_GLOBAL_NOTHING) != 0) {
		snprintf(why, whylen, "libcurl could not be initialised");
		return PROTO_E_UNAVAILABLE;
	}
	/* jansson seeds its hash function once; do it before any thread. */
	json_object_seed(0);
	/* One short call, before the hello is answered: no socket, or nobody
	 * listening on it, makes the driver unusable with the reason, at once.
	 * A daemon that takes the connection but is slow to answer is running:
	 * the hello is not held for it, and the driver's calls say what it does. */
	rc = lxd_call(lxd_socket, "GET", "/1.0", NULL, NULL, LXD_HELLO_CHECK, &r, why, whylen);
	if (rc == PROTO_E_TIMEOUT) {
		vmh_log(VMH_WARN, "LXD on %s took the connection but did not answer within %.0f s; "
			"taking it as running", lxd_socket, LXD_HELLO_CHECK);
		why[0] = '\0';
	} else if (rc < 0) {
		lxd_resp_free(&r);
		return PROTO_E_UNAVAILABLE;
	}
	version = json_string_value(
		json_object_get(json_object_get(r.metadata, "environment"), "server_version"));
	driver = json_string_value(
		json_object_get(json_object_get(r.metadata, "environment"), "driver"));
	vmh_log(VMH_INFO, "lxd driver: LXD %s on %s (instance drivers: %s), instance type %s, "
		"states from LXD's events (polled every %.0f s while they are not followed)",
		version ? version : "?", lxd_socket, driver ? driver : "?", types[type],
		LXD_POLL_INTERVAL);
	lxd_resp_free(&r);
	ev_timer_init(&poll_timer, on_poll, LXD_POLL_INTERVAL, LXD_POLL_INTERVAL);
	ev_timer_start(vmh_loop(), &poll_timer);
	ev_unref(vmh_loop());
	lxd_events_start(lxd_socket, on_event);
	return 0;
}

void lxd_fini(void)
{
	lxd_events_stop();
	if (ev_is_active(&poll_timer)) {
		ev_ref(vmh_loop());
		ev_timer_stop(vmh_loop(), &poll_timer);
	}
}
