/*
 * launch: validate, resolve the image, record the instance, make its
 * cloud-init seed, have the helper create and start it, then wait until it
 * answers SSH and cloud-init is done.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "broker.h"
#include "image.h"

struct launch {
	struct creq *r;
	char name[INSTANCE_NAME_MAX + 1];
	char *image;
	char *cloud_init;
	char *cloud_init_url;           /* fetched before anything is made */
	struct image_text *cloud_init_fetch;
	struct network_record *nets; /* until launch_record hands them to the record */
	size_t n_nets;
	struct instance_record mnt;  /* only its mount lists (launch --mount), likewise */
	uint32_t cpus;
	uint64_t memory, disk;
	int64_t timeout;
	ev_tstamp started;
	unsigned gen;
	char dir[4400];
	struct ssh_wait *sw;
	bool recorded;   /* the record and folder exist */
	bool created;    /* instance.create succeeded */
	int fail_err;
	char fail_msg[2048];
	struct launch *next;        /* in launches */
	/* Set by launch_cancel(): then runs once the launch has let go of the name. */
	const char *cancelled_by;   /* "vmctl stop --force" */
	void (*cancel_then)(void *ud);
	void *cancel_ud;
};

/* Every launch that holds its name (from busy_add() to launch_free()). */
static struct launch *launches;

static void launch_free(struct launch *l)
{
	void (*then)(void *ud) = l->cancel_then;
	void *then_ud = l->cancel_ud;

	for (struct launch **pp = &launches; *pp; pp = &(*pp)->next) {
		if (*pp == l) {
			*pp = l->next;
			break;
		}
	}
	ssh_wait_cancel(l->sw);
	image_text_cancel(l->cloud_init_fetch);
	busy_remove(l->name);
	free(l->image);
	free(l->cloud_init);
	free(l->cloud_init_url);
	network_records_free(l->nets, l->n_nets);
	record_free(&l->mnt);
	free(l);
	if (then)
		then(then_ud);
}

static struct launch *launch_find(const char *name)
{
	for (struct launch *l = launches; l; l = l->next)
		if (l->gen == B->scope_gen && strcmp(l->name, name) == 0)
			return l;
	return NULL;
}

static struct instance_record *launch_rec(struct launch *l)
{
	if (l->gen != B->scope_gen)
		return NULL;
	return registry_find(&B->reg, l->name);
}

static void launch_forget(struct launch *l)
{
	if (l->recorded && l->gen == B->scope_gen) {
		remove_tree(l->dir);
		registry_remove(&B->reg, l->name);
		scope_save();
	}
	creq_fail(l->r, l->fail_err, "%s", l->fail_msg);
	launch_free(l);
}

static void launch_on_rolled_back(void *ud, int err, const char *errmsg, const msgpack_object *result)
{
	struct launch *l = ud;

	if (err < 0)
		vlog(LOG_WARN_, "undoing the launch of %s: %s", l->name, errmsg);
	launch_forget(l);
}

/* Launch failed before the VM could be used: undo everything so the name
 * can be used again. */
static void launch_fail(struct launch *l, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void launch_fail(struct launch *l, int err, const char *fmt, ...)
{
	struct instance_record *rec = launch_rec(l);
	va_list ap;

	l->fail_err = err < 0 ? err : PROTO_E_INTERNAL;
	va_start(ap, fmt);
	vsnprintf(l->fail_msg, sizeof(l->fail_msg), fmt, ap);
	va_end(ap);
	if (l->created && rec) {
		msgpack_sbuffer sb;
		msgpack_packer pk;

		scope_pack_instance_params(&sb, rec, 0, &pk);
		if (helper_call(B->helper, "instance.delete", &sb, BROKER_SHORT_DEADLINE,
				launch_on_rolled_back, l)) {
			msgpack_sbuffer_destroy(&sb);
			return;
		}
		msgpack_sbuffer_destroy(&sb);
	}
	launch_forget(l);
}

static void launch_set_state(struct launch *l, enum proto_state state)
{
	struct instance_record *rec = launch_rec(l);

	if (rec && scope_set_state(rec, state))
		scope_save();
}

/* End a launch that launch_cancel() asked to stop, at the first point where
 * nothing of it is in flight. Before the VM exists there is nothing worth
 * keeping; after, the instance is left to whoever cancelled. */
static bool launch_cancel_due(struct launch *l)
{
	if (!l->cancel_then)
		return false;
	vlog(LOG_INFO_, "the launch of %s ends: cancelled by %s", l->name, l->cancelled_by);
	if (!l->created) {
		launch_fail(l, PROTO_E_INVALID_STATE,
			    "the launch of %s was cancelled by %s before its VM was created; "
			    "nothing was kept", l->name, l->cancelled_by);
		return true;
	}
	creq_fail(l->r, PROTO_E_INVALID_STATE, "the launch of %s was cancelled by %s", l->name,
		  l->cancelled_by);
	launch_free(l);
	return true;
}

bool launch_active(const char *name)
{
	return launch_find(name) != NULL;
}

bool launch_cancel(const char *name, const char *by, void (*then)(void *ud), void *ud)
{
	struct launch *l = launch_find(name);

	if (!l || l->cancel_then)
		return false;
	l->cancelled_by = by;
	l->cancel_then = then;
	l->cancel_ud = ud;
	/* Waiting for SSH or a download of user data can stop at once; a
	 * step in flight ends first. */
	if (l->cloud_init_fetch) {
		image_text_cancel(l->cloud_init_fetch);
		l->cloud_init_fetch = NULL;
		launch_cancel_due(l);
	} else if (l->sw) {
		ssh_wait_cancel(l->sw);
		l->sw = NULL;
		launch_cancel_due(l);
	}
	return true;
}

/* The VM stopped before the launch was done: say so at once, and keep the
 * instance, whose console log tells why. */
static void launch_fail_stopped(struct launch *l, const char *what)
{
	char console[4500], where[4600] = "";

	snprintf(console, sizeof(console), "%s/console.log", l->dir);
	if (access(console, F_OK) == 0)
		snprintf(where, sizeof(where), "; its serial console log is %s", console);
	creq_fail(l->r, PROTO_E_INVALID_STATE,
		  "%s: its VM is no longer running%s; the instance is kept (vmctl start %s tries "
		  "again, vmctl delete --purge %s removes it)",
		  what, where, l->name, l->name);
	launch_free(l);
}

static void launch_on_mounted(void *ud, int err, const char *errmsg);
static void launch_succeed(struct launch *l);

static void launch_on_ssh(void *ud, int err, const char *errmsg)
{
	struct launch *l = ud;

	l->sw = NULL;
	if (err == PROTO_E_INVALID_STATE) {
		launch_fail_stopped(l, errmsg);
		return;
	}
	if (err == PROTO_E_TIMEOUT) {
		creq_fail(l->r, PROTO_E_TIMEOUT, "%s; the instance is kept (see vmctl info %s)", errmsg,
			  l->name);
		launch_free(l);
		return;
	}
	if (err < 0) {
		creq_fail(l->r, err, "%s; the instance is kept (see vmctl info %s)", errmsg, l->name);
		launch_free(l);
		return;
	}
	if (mount_activate(l->name, launch_on_mounted, l))
		return;
	launch_succeed(l);
}

/* The mounts of --mount, once the instance is ready: one that fails does not
 * fail the launch (vmctl info shows it). */
static void launch_on_mounted(void *ud, int err, const char *errmsg)
{
	struct launch *l = ud;

	if (err < 0)
		creq_warning(l->r, "%s", errmsg);
	launch_succeed(l);
}

static void launch_succeed(struct launch *l)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;

	vlog(LOG_INFO_, "launched %s in %.1f s", l->name, ev_now(B->loop) - l->started);
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 1);
	proto_pack_kv_str(&pk, "name", l->name);
	creq_ok(l->r, &sb);
	msgpack_sbuffer_destroy(&sb);
	launch_free(l);
}

static void launch_on_info(void *ud, int err, const char *errmsg, const msgpack_object *result)
{
	struct launch *l = ud;
	struct instance_record *rec;
	char host[64] = "127.0.0.1";
	enum proto_state state = PROTO_STATE_UNKNOWN;
	char what[INSTANCE_NAME_MAX + 128];
	int64_t port = 0;

	if (launch_cancel_due(l))
		return;
	if (err < 0) {
		creq_fail(l->r, err, "%s started, but its SSH address is unknown: %s; the instance is "
			  "kept (see vmctl info %s)", l->name, errmsg, l->name);
		launch_free(l);
		return;
	}
	/* The answer, or a state notification since the start, may tell of its end. */
	rec = launch_rec(l);
	proto_get_state(result, "state", &state);
	if (state != PROTO_STATE_STOPPED && state != PROTO_STATE_SUSPENDED && rec)
		state = rec->state;
	if (state == PROTO_STATE_STOPPED || state == PROTO_STATE_SUSPENDED) {
		snprintf(what, sizeof(what), "%s %s before it answered SSH (the %s driver reports it "
			 "%s)", l->name, proto_state_name(state), B->driver, proto_state_name(state));
		launch_fail_stopped(l, what);
		return;
	}
	proto_get_str(result, "ssh_host", host, sizeof(host));
	if (proto_get_int(result, "ssh_port", &port) < 0 || port <= 0 || port > 65535) {
		creq_fail(l->r, PROTO_E_DRIVER, "the %s driver did not say where SSH of %s listens; "
			  "the instance is kept (see vmctl info %s)", B->driver, l->name, l->name);
		launch_free(l);
		return;
	}
	creq_progress(l->r, -1, "Waiting for %s to answer SSH", l->name);
	l->sw = ssh_wait_start(l->name, host, (int)port, true, l->started + (double)l->timeout,
			       (double)l->timeout, l->r,
			       launch_on_ssh, l);
	if (!l->sw) {
		creq_fail(l->r, PROTO_E_NOMEM, "out of memory");
		launch_free(l);
	}
}

static void launch_on_started(void *ud, int err, const char *errmsg, const msgpack_object *result)
{
	struct launch *l = ud;
	struct instance_record *rec = launch_rec(l);
	enum proto_state state = PROTO_STATE_RUNNING;
	msgpack_sbuffer sb;
	msgpack_packer pk;

	if (err < 0) {
		launch_fail(l, err, "could not start %s: %s", l->name, errmsg);
		return;
	}
	proto_get_state(result, "state", &state);
	launch_set_state(l, state);
	if (launch_cancel_due(l))
		return;
	if (!rec) {
		launch_fail(l, PROTO_E_INTERNAL, "%s vanished from the registry while launching", l->name);
		return;
	}
	scope_pack_instance_params(&sb, rec, 0, &pk);
	if (!helper_call(B->helper, "instance.info", &sb, BROKER_SHORT_DEADLINE, launch_on_info, l))
		launch_fail(l, PROTO_E_NOMEM, "out of memory");
	msgpack_sbuffer_destroy(&sb);
}

static void launch_on_created(void *ud, int err, const char *errmsg, const msgpack_object *result)
{
	struct launch *l = ud;
	struct instance_record *rec = launch_rec(l);
	msgpack_sbuffer sb;
	msgpack_packer pk;

	if (err < 0) {
		launch_fail(l, err, "could not create %s: %s", l->name, errmsg);
		return;
	}
	l->created = true;
	if (launch_cancel_due(l))
		return;
	if (!rec) {
		launch_fail(l, PROTO_E_INTERNAL, "%s vanished from the registry while launching", l->name);
		return;
	}
	creq_progress(l->r, -1, "Starting %s", l->name);
	scope_pack_instance_params(&sb, rec, 0, &pk);
	if (!helper_call(B->helper, "instance.start", &sb, BROKER_START_DEADLINE, launch_on_started, l))
		launch_fail(l, PROTO_E_NOMEM, "out of memory");
	msgpack_sbuffer_destroy(&sb);
}

static void launch_on_seed(void *ud, int err, const char *errmsg)
{
	struct launch *l = ud;
	struct instance_record *rec = launch_rec(l);
	msgpack_sbuffer sb;
	msgpack_packer pk;

	if (err < 0) {
		launch_fail(l, err, "%s", errmsg);
		return;
	}
	if (launch_cancel_due(l))
		return;
	if (!rec) {
		launch_fail(l, PROTO_E_INTERNAL, "%s vanished from the registry while launching", l->name);
		return;
	}
	scope_pack_instance_params(&sb, rec, 0, &pk);
	if (!helper_call(B->helper, "instance.create", &sb, BROKER_CREATE_DEADLINE, launch_on_created, l))
		launch_fail(l, PROTO_E_NOMEM, "out of memory");
	msgpack_sbuffer_destroy(&sb);
}

static void launch_on_keys(void *ud, int err, const char *errmsg)
{
	struct launch *l = ud;
	struct instance_record *rec = launch_rec(l);
	char msg[1024];

	if (err < 0) {
		launch_fail(l, err, "%s", errmsg);
		return;
	}
	if (launch_cancel_due(l))
		return;
	if (!rec) {
		launch_fail(l, PROTO_E_INTERNAL, "%s vanished from the registry while launching", l->name);
		return;
	}
	if (seed_write_network_config(l->dir, rec, msg, sizeof(msg)) < 0 ||
	    seed_make(l->dir, l->name, B->ssh_pubkey, l->cloud_init, launch_on_seed, l, msg,
		      sizeof(msg)) < 0)
		launch_fail(l, PROTO_E_IO, "%s", msg);
}

static int launch_record(struct launch *l, const struct image_spec *spec)
{
	struct instance_record *rec;
	unsigned char rnd[3];
	char mac[32], created[32];
	int rc;

	rc = mkdir_p(l->dir, 0700);
	if (rc < 0)
		return rc;
	rec = registry_add(&B->reg, l->name);
	if (!rec)
		return PROTO_E_NOMEM;
	l->recorded = true;
	rec->networks = l->nets;
	rec->n_networks = l->n_nets;
	l->nets = NULL;
	l->n_nets = 0;
	mount_records_replace(rec, &l->mnt);
	rec->classic_mounts = l->mnt.classic_mounts;
	rec->n_classic_mounts = l->mnt.n_classic_mounts;
	l->mnt.classic_mounts = NULL;
	l->mnt.n_classic_mounts = 0;
	do {
		util_random(rnd, sizeof(rnd));
		util_format_mac(rnd, mac, sizeof(mac));
	} while (networks_mac_taken(rec->networks, rec->n_networks, mac));
	util_iso_time(time(NULL), created, sizeof(created));
	rec->cpus = l->cpus;
	rec->memory = l->memory;
	rec->disk = l->disk;
	rec->state = PROTO_STATE_STARTING;
	if (record_set(&rec->image, spec->source) < 0 ||
	    record_set(&rec->image_disk, spec->disk) < 0 ||
	    record_set(&rec->image_format, spec->format) < 0 ||
	    record_set(&rec->image_kernel, spec->kernel) < 0 ||
	    record_set(&rec->image_initrd, spec->initrd) < 0 ||
	    record_set(&rec->image_cmdline, spec->cmdline) < 0 ||
	    record_set(&rec->image_sha256, spec->sha256) < 0 || record_set(&rec->mac, mac) < 0 ||
	    record_set(&rec->created, created) < 0)
		return PROTO_E_NOMEM;
	return scope_save();
}

static void launch_on_image_progress(void *ud, double fraction, const char *text)
{
	struct launch *l = ud;

	creq_progress(l->r, fraction, "%s", text);
}

static void launch_on_image(void *ud, int err, const char *errmsg, const struct image_spec *spec)
{
	struct launch *l = ud;
	int rc;

	if (err < 0) {
		launch_fail(l, err, "%s", errmsg ? errmsg : proto_strerror(err));
		return;
	}
	if (l->gen != B->scope_gen) {
		launch_fail(l, PROTO_E_BUSY, "the driver was switched while %s was being launched",
			    l->name);
		return;
	}
	/* A container image boots nothing under a hypervisor's disk. */
	if (spec->format && strcmp(spec->format, "lxd") == 0 && strcmp(B->driver, "lxd") != 0) {
		launch_fail(l, PROTO_E_INVALID_ARGUMENT,
			    "%s is an LXD container image, which only the lxd driver runs; the %s "
			    "driver needs a qcow2 or raw disk", spec->source, B->driver);
		return;
	}
	creq_progress(l->r, -1, "Creating %s", l->name);
	rc = launch_record(l, spec);
	if (rc < 0) {
		launch_fail(l, rc, "could not record %s in %s: %s", l->name, B->registry_path,
			    proto_strerror(rc));
		return;
	}
	keys_ensure(launch_on_keys, l);
}

/* memory/disk: bytes as an int, or a size string ("1G"). */
static int launch_size(struct creq *r, const msgpack_object *p, const char *key, uint64_t dflt,
		       uint64_t min, uint64_t *out)
{
	const msgpack_object *v = proto_map_get(p, key);
	char text[64], err[256], minbuf[32];

	*out = dflt;
	if (!v || v->type == MSGPACK_OBJECT_NIL)
		return 0;
	if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
		*out = v->via.u64;
	} else if (proto_obj_str(v, text, sizeof(text)) == 0) {
		if (parse_size(text, out, err, sizeof(err)) < 0) {
			creq_fail(r, PROTO_E_INVALID_ARGUMENT, "%s: %s", key, err);
			return PROTO_E_INVALID_ARGUMENT;
		}
	} else {
		creq_fail(r, PROTO_E_INVALID_ARGUMENT, "%s must be a size in bytes", key);
		return PROTO_E_INVALID_ARGUMENT;
	}
	if (*out == 0) {
		*out = dflt;
		return 0;
	}
	if (*out < min) {
		format_size(min, minbuf, sizeof(minbuf));
		creq_fail(r, PROTO_E_INVALID_ARGUMENT, "%s must be at least %s", key, minbuf);
		return PROTO_E_INVALID_ARGUMENT;
	}
	return 0;
}

static int launch_pick_name(char *buf, size_t len)
{
	for (int tries = 0; tries < 64; tries++) {
		uint32_t rnd;

		util_random(&rnd, sizeof(rnd));
		if (tries < 48)
			util_pick_name(rnd, buf, len);
		else
			snprintf(buf, len, "vm-%04x", rnd & 0xffff);
		if (!registry_find(&B->reg, buf) && !busy_find(buf))
			return 0;
	}
	return PROTO_E_ALREADY_EXISTS;
}

static void launch_resolve_image(struct launch *l)
{
	creq_progress(l->r, -1, "Retrieving image");
	/* done may run (and free l) before image_resolve returns. */
	image_resolve(B->images, l->image, launch_on_image_progress, launch_on_image, l);
}

static bool launch_network_listed(const msgpack_object *list, const char *name)
{
	if (!list || list->type != MSGPACK_OBJECT_ARRAY)
		return false;
	for (uint32_t i = 0; i < list->via.array.size; i++)
		if (proto_obj_streq(proto_map_get(&list->via.array.ptr[i], "name"), name))
			return true;
	return false;
}

/* Refuse a network the driver cannot attach to before anything is made. */
static void launch_on_networks(void *ud, int err, const char *errmsg, const msgpack_object *result)
{
	struct launch *l = ud;
	const msgpack_object *list = proto_map_get(result, "networks");

	if (err < 0) {
		launch_fail(l, err, "could not list the host networks of the %s driver: %s", B->driver,
			    errmsg);
		return;
	}
	for (size_t i = 0; i < l->n_nets; i++) {
		if (!launch_network_listed(list, l->nets[i].name)) {
			launch_fail(l, PROTO_E_INVALID_ARGUMENT,
				    "'%s' is not a network the %s driver can attach instances to; "
				    "vmctl networks lists those it can", l->nets[i].name, B->driver);
			return;
		}
	}
	launch_resolve_image(l);
}

/* Check the networks (when any), then resolve the image. */
static void launch_go_on(struct launch *l)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;

	if (!l->n_nets) {
		launch_resolve_image(l);
		return;
	}
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 0);
	if (!helper_call(B->helper, "networks.list", &sb, BROKER_SHORT_DEADLINE, launch_on_networks,
			 l))
		launch_fail(l, PROTO_E_NOMEM, "out of memory");
	msgpack_sbuffer_destroy(&sb);
}

static void launch_on_cloud_init(void *ud, int err, const char *errmsg, const char *body,
				 size_t len)
{
	struct launch *l = ud;
	char why[1024];

	l->cloud_init_fetch = NULL;
	if (launch_cancel_due(l))
		return;
	if (err < 0) {
		/* A 404 or a document too large is the user's to fix. */
		launch_fail(l, err == PROTO_E_DRIVER || err == PROTO_E_NOT_FOUND
				       ? PROTO_E_INVALID_ARGUMENT
				       : err,
			    "cannot fetch the cloud-init user data: %s", errmsg);
		return;
	}
	if (strlen(body) != len) {
		launch_fail(l, PROTO_E_INVALID_ARGUMENT,
			    "the cloud-init user data at %s is not text (it contains a NUL byte)",
			    l->cloud_init_url);
		return;
	}
	if (cloudinit_validate(body, why, sizeof(why)) < 0) {
		launch_fail(l, PROTO_E_INVALID_ARGUMENT,
			    "%s is not cloud-config user data: %s", l->cloud_init_url, why);
		return;
	}
	l->cloud_init = strdup(body);
	if (!l->cloud_init) {
		launch_fail(l, PROTO_E_NOMEM, "out of memory");
		return;
	}
	launch_go_on(l);
}

void op_launch(struct creq *r, const msgpack_object *p)
{
	struct launch *l = calloc(1, sizeof(*l));
	struct instance_record *taken;
	char err[1024];
	int64_t cpus = 1;
	int rc;

	if (!l) {
		creq_fail(r, PROTO_E_NOMEM, "out of memory");
		return;
	}
	l->r = r;
	l->gen = B->scope_gen;
	l->started = ev_now(B->loop);
	rc = proto_get_str(p, "name", l->name, sizeof(l->name));
	if (rc == PROTO_E_INVALID_ARGUMENT) {
		creq_fail(r, rc, "the instance name is too long (at most %d characters)",
			  INSTANCE_NAME_MAX);
		goto out_free;
	}
	if (rc == 0 && l->name[0] && validate_instance_name(l->name, err, sizeof(err)) < 0) {
		creq_fail(r, PROTO_E_INVALID_ARGUMENT, "%s", err);
		goto out_free;
	}
	if (proto_get_int(p, "cpus", &cpus) == PROTO_E_INVALID_ARGUMENT || cpus < 0 || cpus > 1024) {
		creq_fail(r, PROTO_E_INVALID_ARGUMENT, "cpus must be a number from 1 to 1024");
		goto out_free;
	}
	l->cpus = cpus ? (uint32_t)cpus : 1;
	if (launch_size(r, p, "memory", 1ull << 30, MIN_MEMORY, &l->memory) < 0 ||
	    launch_size(r, p, "disk", 5ull << 30, MIN_DISK, &l->disk) < 0)
		goto out_free;
	l->timeout = BROKER_LAUNCH_DEFAULT;
	if (proto_get_int(p, "timeout", &l->timeout) == 0 && l->timeout <= 0)
		l->timeout = BROKER_LAUNCH_DEFAULT;
	l->cloud_init = proto_dup_str(p, "cloud_init");
	if (l->cloud_init && cloudinit_validate(l->cloud_init, err, sizeof(err)) < 0) {
		creq_fail(r, PROTO_E_INVALID_ARGUMENT, "the cloud-init file is not usable: %s", err);
		goto out_free;
	}
	l->cloud_init_url = proto_dup_str(p, "cloud_init_url");
	if (l->cloud_init_url && l->cloud_init) {
		creq_fail(r, PROTO_E_INVALID_ARGUMENT, "give cloud_init or cloud_init_url, not both");
		goto out_free;
	}
	if (l->cloud_init_url && strncmp(l->cloud_init_url, "http://", 7) != 0 &&
	    strncmp(l->cloud_init_url, "https://", 8) != 0) {
		creq_fail(r, PROTO_E_INVALID_ARGUMENT,
			  "cloud-init user data can be fetched over http:// or https:// only, not "
			  "from '%s'", l->cloud_init_url);
		goto out_free;
	}
	rc = networks_from_params(p, settings_get(&B->settings, "local.bridged-network"), &l->nets,
				  &l->n_nets, err, sizeof(err));
	if (rc < 0) {
		creq_fail(r, rc, "%s", err);
		goto out_free;
	}
	if (l->n_nets && opx_refuse_feature(r, PROTO_FEAT_EXTRA_NETWORKS))
		goto out_free;
	rc = mount_launch_params(p, &l->mnt, err, sizeof(err));
	if (rc < 0) {
		creq_fail(r, rc, "%s", err);
		goto out_free;
	}
	l->image = proto_dup_str(p, "image");
	if (!l->image || !l->image[0]) {
		free(l->image);
		l->image = strdup(settings_get(&B->settings, "local.image.default"));
	}
	if (!l->name[0] && launch_pick_name(l->name, sizeof(l->name)) < 0) {
		creq_fail(r, PROTO_E_ALREADY_EXISTS, "could not find a free instance name; give one");
		goto out_free;
	}
	taken = registry_find(&B->reg, l->name);
	if (taken && taken->deleted) {
		creq_fail(r, PROTO_E_ALREADY_EXISTS,
			  "an instance named %s exists (deleted); recover it with vmctl recover %s "
			  "or remove it for good with vmctl purge",
			  l->name, l->name);
		goto out_free;
	}
	if (taken || busy_find(l->name)) {
		creq_fail(r, PROTO_E_ALREADY_EXISTS, "an instance named %s already exists", l->name);
		goto out_free;
	}
	scope_instance_dir(l->name, l->dir, sizeof(l->dir));
	if (access(l->dir, F_OK) == 0) {
		creq_fail(r, PROTO_E_ALREADY_EXISTS,
			  "%s already exists but no instance %s is registered; remove that folder or "
			  "choose another name",
			  l->dir, l->name);
		goto out_free;
	}
	if (B->helper && (helper_get_state(B->helper) == HELPER_MISSING ||
			  helper_get_state(B->helper) == HELPER_UNUSABLE)) {
		creq_fail(r, PROTO_E_UNAVAILABLE, "%s", helper_why(B->helper));
		goto out_free;
	}
	if (busy_add(l->name, "being launched") < 0) {
		creq_fail(r, PROTO_E_NOMEM, "out of memory");
		goto out_free;
	}
	l->next = launches;
	launches = l;
	vlog(LOG_INFO_, "launching %s from %s", l->name, l->image);
	if (l->cloud_init_url) {
		creq_progress(l->r, -1, "Fetching the cloud-init user data");
		l->cloud_init_fetch = image_fetch_text(B->images, l->cloud_init_url,
						       BROKER_CLOUD_INIT_MAX, launch_on_cloud_init, l);
		if (!l->cloud_init_fetch)
			launch_fail(l, PROTO_E_NOMEM, "out of memory");
		return;
	}
	launch_go_on(l);
	return;

out_free:
	free(l->image);
	free(l->cloud_init);
	free(l->cloud_init_url);
	network_records_free(l->nets, l->n_nets);
	record_free(&l->mnt);
	free(l);
}
