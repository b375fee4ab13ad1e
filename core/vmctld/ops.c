/*
 * CLI methods on instances: list, info, start, stop, restart, suspend,
 * delete, recover, purge, ssh_info, networks, find; and the reconciliation
 * of recorded states after a helper (re)starts.
 *
 * Operations on several instances run as one batch: every name is checked
 * before anything is done, then one helper call per instance runs
 * concurrently, and the request is answered when the last one finishes.
 */
#include <dirent.h>
#include <errno.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker.h"
#include "image.h"

enum batch_kind { BK_START, BK_STOP, BK_RESTART, BK_SUSPEND, BK_DELETE, BK_PURGE, BK_INFO };

struct batch;

struct batch_item {
	struct batch *b;
	char *name;
	bool busy;        /* we hold the name in B->busy */
	bool cancelled_launch; /* it waited for a launch of its instance to be cancelled */
	struct ssh_wait *sw;
	int err;
	char *errmsg;
	/* info results */
	enum proto_state state;
	char ssh_host[64];
	int64_t ssh_port;
	msgpack_sbuffer ipv4; /* packed array */
	char instance_type[32]; /* the driver's kind of instance, if it says */
	char reason[PROTO_REASON_MAX + 1]; /* why the state is unknown, when the call failed */
};

struct batch {
	struct creq *r;
	enum batch_kind kind;
	unsigned gen;
	bool force;
	int64_t timeout;
	ev_tstamp deadline;
	size_t n, pending;
	struct batch_item *items;
};

static const char *batch_verb[] = {
	[BK_START] = "start", [BK_STOP] = "stop", [BK_RESTART] = "restart",
	[BK_SUSPEND] = "suspend", [BK_DELETE] = "delete", [BK_PURGE] = "purge",
	[BK_INFO] = "info",
};

static bool instance_dir_exists(const char *name)
{
	char dir[4400];
	struct stat st;

	scope_instance_dir(name, dir, sizeof(dir));
	return stat(dir, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The instance folders of the active scope, read with one readdir() so that
 * a list of 1,000 instances costs a few getdents() rather than a path walk
 * per instance and per use. Names are sorted for bsearch(). */
struct dir_set {
	char **names;
	size_t n;
	bool ok; /* false: could not be read; every question goes to stat() */
};

static int dir_set_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void dir_set_free(struct dir_set *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->names[i]);
	free(s->names);
	*s = (struct dir_set){0};
}

static void dir_set_load(struct dir_set *s)
{
	char dir[4300];
	DIR *dh;
	struct dirent *de;
	size_t cap = 0;

	*s = (struct dir_set){0};
	snprintf(dir, sizeof(dir), "%s/instances", B->scope_dir);
	dh = opendir(dir);
	if (!dh)
		return;
	while ((de = readdir(dh)) != NULL) {
		struct stat st;
		char **grown;

		if (de->d_name[0] == '.')
			continue;
		/* d_type is a hint some file systems leave out; links are followed. */
		if (de->d_type != DT_DIR) {
			if (de->d_type != DT_UNKNOWN && de->d_type != DT_LNK)
				continue;
			if (fstatat(dirfd(dh), de->d_name, &st, 0) < 0 || !S_ISDIR(st.st_mode))
				continue;
		}
		if (s->n == cap) {
			cap = cap ? cap * 2 : 64;
			grown = realloc(s->names, cap * sizeof(*grown));
			if (!grown)
				goto out_fail;
			s->names = grown;
		}
		if (!(s->names[s->n] = strdup(de->d_name)))
			goto out_fail;
		s->n++;
	}
	closedir(dh);
	if (s->n)
		qsort(s->names, s->n, sizeof(*s->names), dir_set_cmp);
	s->ok = true;
	return;

out_fail:
	closedir(dh);
	dir_set_free(s);
}

/* A name missing from the set is asked again: its folder may be newer than
 * the set (a launch since), and a missing folder is rare. */
static bool dir_set_has(const struct dir_set *s, const char *name)
{
	if (s->ok && s->n && bsearch(&name, s->names, s->n, sizeof(*s->names), dir_set_cmp))
		return true;
	return instance_dir_exists(name);
}

/* The record of an item, or NULL if the scope changed or it is gone. */
static struct instance_record *item_rec(struct batch_item *it)
{
	if (it->b->gen != B->scope_gen)
		return NULL;
	return registry_find(&B->reg, it->name);
}

static void batch_free(struct batch *b)
{
	for (size_t i = 0; i < b->n; i++) {
		struct batch_item *it = &b->items[i];

		if (it->busy)
			busy_remove(it->name);
		if (it->sw)
			ssh_wait_cancel(it->sw);
		free(it->name);
		free(it->errmsg);
		msgpack_sbuffer_destroy(&it->ipv4);
	}
	free(b->items);
	/* A batch over hundreds of instances leaves free heap pages behind. */
	if (b->n > 64)
		malloc_trim(0);
	free(b);
}

static void batch_answer_info(struct batch *b);

static void batch_answer(struct batch *b)
{
	char msg[4096] = "";
	size_t used = 0, n_failed = 0;
	int err = 0;

	if (b->kind == BK_INFO) {
		batch_answer_info(b);
		return;
	}
	for (size_t i = 0; i < b->n; i++) {
		struct batch_item *it = &b->items[i];

		if (it->err == 0)
			continue;
		n_failed++;
		/* A timeout is the one error the CLI maps to its own exit code. */
		if (err == 0 || it->err == PROTO_E_TIMEOUT)
			err = it->err;
		if (used < sizeof(msg))
			used += (size_t)snprintf(msg + used, sizeof(msg) - used, "%s%s", used ? "; " : "",
						 it->errmsg ? it->errmsg : proto_strerror(it->err));
	}
	if (n_failed == 0)
		creq_ok(b->r, NULL);
	else
		creq_fail(b->r, err, "%s", msg);
	b->r = NULL;
	batch_free(b);
}

static void item_done(struct batch_item *it, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void item_done(struct batch_item *it, int err, const char *fmt, ...)
{
	struct batch *b = it->b;

	if (it->busy) {
		busy_remove(it->name);
		it->busy = false;
	}
	it->err = err;
	if (err < 0 && fmt) {
		char msg[2048];
		va_list ap;

		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
		it->errmsg = strdup(msg);
	}
	if (--b->pending == 0)
		batch_answer(b);
}

/* Pack {instance} plus extra pairs described by the caller. */
static struct hcall *item_call(struct batch_item *it, struct instance_record *rec,
			       const char *method, double deadline, proto_result_fn cb)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct hcall *c;
	size_t extra = 0;

	if (strcmp(method, "instance.stop") == 0)
		extra = 2;
	else if (strcmp(method, "instance.restart") == 0)
		extra = 1;
	scope_pack_instance_params(&sb, rec, extra, &pk);
	if (strcmp(method, "instance.stop") == 0) {
		proto_pack_kv_bool(&pk, "force", it->b->force);
		proto_pack_kv_int(&pk, "timeout", it->b->timeout);
	} else if (strcmp(method, "instance.restart") == 0) {
		/* --timeout bounds the wait for SSH; the graceful part of the
		 * reboot gets the usual stop timeout. */
		proto_pack_kv_int(&pk, "timeout", it->b->timeout < BROKER_STOP_DEFAULT
							 ? it->b->timeout
							 : BROKER_STOP_DEFAULT);
	}
	c = helper_call(B->helper, method, &sb, deadline, cb, it);
	msgpack_sbuffer_destroy(&sb);
	return c;
}

/* Record the state a helper answered (or the one the method implies). */
static void item_take_state(struct batch_item *it, const msgpack_object *result,
			    enum proto_state implied)
{
	struct instance_record *rec = item_rec(it);
	enum proto_state state = implied;

	if (!rec)
		return;
	proto_get_state(result, "state", &state);
	if (scope_set_state(rec, state))
		scope_save();
}

/* A mount that fails in the guest does not fail the start. */
static void item_on_mounted(void *ud, int err, const char *errmsg)
{
	struct batch_item *it = ud;

	if (err < 0)
		creq_warning(it->b->r, "%s", errmsg);
	item_done(it, 0, NULL);
}

static void item_on_ssh(void *ud, int err, const char *errmsg)
{
	struct batch_item *it = ud;

	it->sw = NULL;
	if (err < 0)
		item_done(it, err, "%s", errmsg);
	else if (!mount_activate(it->name, item_on_mounted, it))
		item_done(it, 0, NULL);
}

static void item_on_info_for_ssh(void *ud, int err, const char *errmsg, const msgpack_object *result)
{
	struct batch_item *it = ud;
	char host[64] = "127.0.0.1";
	int64_t port = 0;

	if (err < 0) {
		item_done(it, err, "%s: %s", it->name, errmsg);
		return;
	}
	proto_get_str(result, "ssh_host", host, sizeof(host));
	if (proto_get_int(result, "ssh_port", &port) < 0 || port <= 0 || port > 65535) {
		/* The driver does not tell where SSH listens: nothing to wait for. */
		item_done(it, 0, NULL);
		return;
	}
	creq_progress(it->b->r, -1, "Waiting for %s to answer SSH", it->name);
	it->sw = ssh_wait_start(it->name, host, (int)port, false,
				it->b->kind == BK_RESTART ? ev_now(B->loop) + (double)it->b->timeout
							  : it->b->deadline,
				(double)it->b->timeout, NULL, item_on_ssh, it);
	if (!it->sw)
		item_done(it, PROTO_E_NOMEM, "%s: out of memory", it->name);
}

static void item_on_started(void *ud, int err, const char *errmsg, const msgpack_object *result)
{
	struct batch_item *it = ud;
	struct instance_record *rec;

	if (err < 0) {
		item_done(it, err, "could not %s %s: %s", batch_verb[it->b->kind], it->name, errmsg);
		return;
	}
	item_take_state(it, result, PROTO_STATE_RUNNING);
	rec = item_rec(it);
	if (!rec) {
		item_done(it, 0, NULL);
		return;
	}
	if (it->busy) {
		/* Waiting for SSH does not hold the instance: stop may interrupt it. */
		busy_remove(it->name);
		it->busy = false;
	}
	{
		msgpack_sbuffer sb;
		msgpack_packer pk;

		scope_pack_instance_params(&sb, rec, 0, &pk);
		if (!helper_call(B->helper, "instance.info", &sb, BROKER_SHORT_DEADLINE,
				 item_on_info_for_ssh, it))
			item_done(it, PROTO_E_NOMEM, "out of memory");
		msgpack_sbuffer_destroy(&sb);
	}
}

static void item_on_simple(void *ud, int err, const char *errmsg, const msgpack_object *result)
{
	struct batch_item *it = ud;
	static const enum proto_state implied[] = {
		[BK_STOP] = PROTO_STATE_STOPPED, [BK_SUSPEND] = PROTO_STATE_SUSPENDED,
	};

	if (err < 0) {
		item_done(it, err, "could not %s %s: %s", batch_verb[it->b->kind], it->name, errmsg);
		return;
	}
	item_take_state(it, result, implied[it->b->kind]);
	item_done(it, 0, NULL);
}

/* A suspend that failed after the guest's native mounts were unmounted:
 * mount them again, then report the failure. */
static void item_on_remounted(void *ud, int err, const char *errmsg)
{
	struct batch_item *it = ud;
	char *why = it->errmsg;

	it->errmsg = NULL;
	if (err < 0)
		creq_warning(it->b->r, "%s", errmsg);
	item_done(it, it->err, "%s", why ? why : "could not suspend");
	free(why);
}

static void item_on_suspended_unmounted(void *ud, int err, const char *errmsg,
					const msgpack_object *result)
{
	struct batch_item *it = ud;
	char msg[2048];

	if (err == 0) {
		item_on_simple(ud, err, errmsg, result);
		return;
	}
	snprintf(msg, sizeof(msg), "could not suspend %s: %s", it->name, errmsg);
	it->err = err;
	it->errmsg = strdup(msg);
	if (!mount_activate(it->name, item_on_remounted, it))
		item_on_remounted(it, 0, NULL);
}

/* QEMU cannot save a VM whose 9p mounts are in use: unmount them first. */
static void item_on_unmounted(void *ud, int err, const char *errmsg)
{
	struct batch_item *it = ud;
	struct instance_record *rec = item_rec(it);

	if (err < 0) {
		item_done(it, err, "could not suspend %s: %s; it keeps running", it->name, errmsg);
		return;
	}
	if (!rec || !item_call(it, rec, "instance.suspend", BROKER_START_DEADLINE,
			       item_on_suspended_unmounted))
		item_done(it, PROTO_E_NOMEM, "out of memory");
}

static void item_on_soft_deleted(void *ud, int err, const char *errmsg, const msgpack_object *result)
{
	struct batch_item *it = ud;
	struct instance_record *rec = item_rec(it);

	if (err < 0) {
		item_done(it, err, "could not stop %s to delete it: %s", it->name, errmsg);
		return;
	}
	if (rec) {
		rec->state = PROTO_STATE_STOPPED;
		proto_get_state(result, "state", &rec->state);
		rec->deleted = true;
		scope_save();
	}
	item_done(it, 0, NULL);
}

static void item_purge_record(struct batch_item *it)
{
	char dir[4400];
	int rc;

	if (!item_rec(it)) {
		item_done(it, 0, NULL);
		return;
	}
	scope_instance_dir(it->name, dir, sizeof(dir));
	rc = remove_tree(dir);
	if (rc < 0 && rc != PROTO_E_NOT_FOUND) {
		if (rc == PROTO_E_INVALID_STATE)
			item_done(it, rc, "could not remove %s: something is mounted inside it "
				  "(see /proc/self/mountinfo); unmount it and purge again", dir);
		else
			item_done(it, rc, "could not remove %s: %s", dir, proto_strerror(rc));
		return;
	}
	registry_remove(&B->reg, it->name);
	helper_reason_set(B->helper, it->name, NULL);
	scope_save();
	vlog(LOG_INFO_, "purged %s", it->name);
	item_done(it, 0, NULL);
}

static void item_on_helper_deleted(void *ud, int err, const char *errmsg, const msgpack_object *result)
{
	struct batch_item *it = ud;

	if (err < 0 && err != PROTO_E_NOT_FOUND && instance_dir_exists(it->name)) {
		item_done(it, err, "could not delete %s: %s", it->name, errmsg);
		return;
	}
	if (err < 0)
		vlog(LOG_WARN_, "instance.delete of %s: %s (purging the record anyway)", it->name,
		     errmsg);
	item_purge_record(it);
}

static void item_run(struct batch_item *it);

static void item_on_launch_cancelled(void *ud)
{
	item_run(ud);
}

/* What stops a launch in progress instead of waiting for it: a forced stop
 * and a delete (the launch may hold the name for its whole --timeout). */
static const char *item_launch_canceller(const struct batch_item *it)
{
	switch (it->b->kind) {
	case BK_STOP:
		return it->b->force ? "vmctl stop --force" : NULL;
	case BK_DELETE:
		return "vmctl delete";
	case BK_PURGE:
		return "vmctl delete --purge";
	default:
		return NULL;
	}
}

static void item_run(struct batch_item *it)
{
	struct batch *b = it->b;
	struct instance_record *rec = item_rec(it);
	struct busy *busy;
	struct hcall *c = NULL;
	const char *canceller = item_launch_canceller(it);

	if (!rec) {
		/* The cancelled launch had made nothing yet and was undone. */
		if (it->cancelled_launch)
			item_done(it, 0, NULL);
		else
			item_done(it, PROTO_E_NOT_FOUND, "instance %s does not exist", it->name);
		return;
	}
	busy = busy_find(it->name);
	if (busy && canceller && !it->cancelled_launch) {
		/* item_on_launch_cancelled may run before launch_cancel returns. */
		it->cancelled_launch = true;
		if (launch_cancel(it->name, canceller, item_on_launch_cancelled, it))
			return;
		it->cancelled_launch = false;
	}
	if (busy && b->kind == BK_STOP && !b->force && launch_active(it->name)) {
		item_done(it, PROTO_E_BUSY, "%s is busy (%s); vmctl stop --force %s or vmctl delete %s "
			  "cancels the launch", it->name, busy->what, it->name, it->name);
		return;
	}
	if (busy) {
		item_done(it, PROTO_E_BUSY, "%s is busy (%s); try again later", it->name, busy->what);
		return;
	}
	if (rec->deleted && b->kind != BK_DELETE && b->kind != BK_PURGE) {
		item_done(it, PROTO_E_INVALID_STATE,
			  "%s is deleted; recover it first with: vmctl recover %s", it->name, it->name);
		return;
	}
	if (b->kind != BK_PURGE && !(b->kind == BK_DELETE && rec->deleted) &&
	    !instance_dir_exists(it->name) && b->kind != BK_DELETE) {
		item_done(it, PROTO_E_NOT_FOUND,
			  "the folder of %s is missing (removed outside vmctl?); "
			  "vmctl delete --purge %s forgets it",
			  it->name, it->name);
		return;
	}
	busy_add(it->name, "busy with another request");
	it->busy = true;
	switch (b->kind) {
	case BK_START:
		c = item_call(it, rec, "instance.start", BROKER_START_DEADLINE, item_on_started);
		break;
	case BK_RESTART:
		c = item_call(it, rec, "instance.restart", BROKER_STOP_DEFAULT + BROKER_START_DEADLINE,
			      item_on_started);
		break;
	case BK_STOP:
		c = item_call(it, rec, "instance.stop", (b->force ? 0 : b->timeout) + BROKER_SHORT_DEADLINE,
			      item_on_simple);
		break;
	case BK_SUSPEND:
		if (rec->n_mounts && util_state_active(rec->state) &&
		    mount_deactivate(it->name, item_on_unmounted, it))
			return;
		c = item_call(it, rec, "instance.suspend", BROKER_START_DEADLINE, item_on_simple);
		break;
	case BK_DELETE:
		stop_delay_forget(it->name);
		if (rec->deleted) {
			item_done(it, 0, NULL);
			return;
		}
		if (!instance_dir_exists(it->name)) {
			rec->deleted = true;
			scope_save();
			item_done(it, 0, NULL);
			return;
		}
		b->force = true;
		b->timeout = 0;
		c = item_call(it, rec, "instance.stop", BROKER_SHORT_DEADLINE, item_on_soft_deleted);
		break;
	case BK_PURGE:
		c = item_call(it, rec, "instance.delete", BROKER_SHORT_DEADLINE, item_on_helper_deleted);
		break;
	case BK_INFO:
		break;
	}
	if (!c)
		item_done(it, PROTO_E_NOMEM, "out of memory");
}

static struct batch *batch_new(struct creq *r, enum batch_kind kind, char **names, size_t n)
{
	struct batch *b = calloc(1, sizeof(*b));

	if (!b || !(b->items = calloc(n ? n : 1, sizeof(*b->items)))) {
		free(b);
		names_free(names, n);
		creq_fail(r, PROTO_E_NOMEM, "out of memory");
		return NULL;
	}
	b->r = r;
	b->kind = kind;
	b->gen = B->scope_gen;
	b->n = n;
	for (size_t i = 0; i < n; i++) {
		b->items[i].b = b;
		b->items[i].name = names[i];
		msgpack_sbuffer_init(&b->items[i].ipv4);
	}
	free(names);
	return b;
}

static void batch_run(struct batch *b)
{
	if (b->n == 0) {
		creq_ok(b->r, NULL);
		batch_free(b);
		return;
	}
	/* +1 so that items finishing at once do not answer before all started. */
	b->pending = b->n + 1;
	for (size_t i = 0; i < b->n; i++)
		item_run(&b->items[i]);
	if (--b->pending == 0)
		batch_answer(b);
}

static int64_t param_timeout(const msgpack_object *p, int64_t dflt)
{
	int64_t t = 0;

	if (proto_get_int(p, "timeout", &t) < 0 || t <= 0)
		return dflt;
	return t;
}

static void op_batch(struct creq *r, const msgpack_object *p, enum batch_kind kind,
		     bool include_deleted, int64_t dflt_timeout)
{
	char **names;
	size_t n;
	struct batch *b;

	if (creq_names(r, p, include_deleted, &names, &n) < 0)
		return;
	b = batch_new(r, kind, names, n);
	if (!b)
		return;
	b->timeout = param_timeout(p, dflt_timeout);
	b->deadline = ev_now(B->loop) + (double)b->timeout;
	proto_get_bool(p, "force", &b->force);
	batch_run(b);
}

void op_start(struct creq *r, const msgpack_object *p)
{
	op_batch(r, p, BK_START, false, BROKER_START_DEFAULT);
}

void op_restart(struct creq *r, const msgpack_object *p)
{
	op_batch(r, p, BK_RESTART, false, BROKER_START_DEFAULT);
}

void op_stop(struct creq *r, const msgpack_object *p)
{
	/* --time and --cancel are op-stop-delay.c's; a plain stop also drops
	 * the delayed stops of the instances it addresses. */
	if (stop_delay_request(r, p))
		return;
	op_batch(r, p, BK_STOP, false, BROKER_STOP_DEFAULT);
}

void op_suspend(struct creq *r, const msgpack_object *p)
{
	if (!broker_has_feature(PROTO_FEAT_SUSPEND)) {
		char msg[512];

		driver_refusal(PROTO_FEAT_SUSPEND, B->driver, msg, sizeof(msg));
		creq_fail(r, PROTO_E_UNSUPPORTED, "%s", msg);
		return;
	}
	op_batch(r, p, BK_SUSPEND, false, BROKER_START_DEFAULT);
}

void op_delete(struct creq *r, const msgpack_object *p)
{
	bool purge = false;

	proto_get_bool(p, "purge", &purge);
	op_batch(r, p, purge ? BK_PURGE : BK_DELETE, purge, 0);
}

void op_purge(struct creq *r, const msgpack_object *p)
{
	char **names = NULL;
	size_t n = 0;
	struct batch *b;

	for (size_t i = 0; i < B->reg.n; i++) {
		char **grown;

		if (!B->reg.v[i].deleted)
			continue;
		grown = realloc(names, (n + 1) * sizeof(*grown));
		if (!grown || !(grown[n] = strdup(B->reg.v[i].name))) {
			names_free(grown ? grown : names, n);
			creq_fail(r, PROTO_E_NOMEM, "out of memory");
			return;
		}
		names = grown;
		n++;
	}
	b = batch_new(r, BK_PURGE, names, n);
	if (b)
		batch_run(b);
}

/* Rebuild the records of the named folders that have none (orphan.c);
 * all: every such folder. 0, or a negative code once r is answered. */
static int recover_orphans(struct creq *r, const msgpack_object *p)
{
	const msgpack_object *list = proto_map_get(p, "names");
	char **orphans, note[2048];
	size_t n;
	bool all = false;
	int rc;

	proto_get_bool(p, "all", &all);
	if (!all && (!list || list->type != MSGPACK_OBJECT_ARRAY))
		return 0;
	rc = orphans_find(B->scope_dir, &B->reg, &orphans, &n);
	if (rc < 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		bool named = all;

		for (uint32_t j = 0; !named && j < list->via.array.size; j++)
			named = proto_obj_streq(&list->via.array.ptr[j], orphans[i]);
		if (!named || busy_find(orphans[i]))
			continue;
		rc = orphan_rebuild(orphans[i], note, sizeof(note));
		if (rc < 0) {
			creq_fail(r, rc, "%s", note);
			break;
		}
		creq_warning(r, "%s", note);
	}
	names_free(orphans, n);
	return rc < 0 ? rc : 0;
}

void op_recover(struct creq *r, const msgpack_object *p)
{
	char **names;
	size_t n;
	bool changed = false;

	if (recover_orphans(r, p) < 0 || creq_names(r, p, true, &names, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		struct instance_record *rec = registry_find(&B->reg, names[i]);

		if (!rec || !rec->deleted)
			continue;
		rec->deleted = false;
		rec->state = PROTO_STATE_STOPPED;
		changed = true;
	}
	names_free(names, n);
	if (changed && scope_save() < 0) {
		creq_fail(r, PROTO_E_IO, "could not save %s", B->registry_path);
		return;
	}
	creq_ok(r, NULL);
}

/* ---- info ---- */

static void item_on_addresses(void *ud)
{
	item_done(ud, 0, NULL);
}

static void item_on_info(void *ud, int err, const char *errmsg, const msgpack_object *result)
{
	struct batch_item *it = ud;
	const msgpack_object *ipv4;
	struct instance_record *live;

	if (err < 0) {
		it->state = PROTO_STATE_UNKNOWN;
		creq_warning(it->b->r, "could not get the state of %s: %s", it->name, errmsg);
		snprintf(it->reason, sizeof(it->reason), "%s", errmsg ? errmsg : "");
		item_done(it, 0, NULL);
		return;
	}
	if (proto_get_state(result, "state", &it->state) == 0) {
		struct instance_record *rec = item_rec(it);

		if (rec && scope_set_state(rec, it->state))
			scope_save();
	} else {
		it->state = PROTO_STATE_UNKNOWN;
	}
	helper_reason_set(B->helper, it->name, proto_map_get(result, "reason"));
	proto_get_str(result, "ssh_host", it->ssh_host, sizeof(it->ssh_host));
	proto_get_int(result, "ssh_port", &it->ssh_port);
	proto_get_str(result, "instance_type", it->instance_type, sizeof(it->instance_type));
	ipv4 = proto_map_get(result, "ipv4");
	if (ipv4 && ipv4->type == MSGPACK_OBJECT_ARRAY) {
		msgpack_packer pk;

		msgpack_packer_init(&pk, &it->ipv4, msgpack_sbuffer_write);
		msgpack_pack_array(&pk, ipv4->via.array.size);
		for (uint32_t i = 0; i < ipv4->via.array.size; i++) {
			if (ipv4->via.array.ptr[i].type == MSGPACK_OBJECT_STR)
				msgpack_pack_object(&pk, ipv4->via.array.ptr[i]);
			else
				proto_pack_str(&pk, "");
		}
	}
	/* Addresses on extra networks are known to the guest alone. */
	live = item_rec(it);
	if (live && it->state == PROTO_STATE_RUNNING &&
	    addresses_refresh(live, it->ssh_host, it->ssh_port, &it->ipv4, item_on_addresses, it))
		return;
	item_done(it, 0, NULL);
}

static void batch_answer_info(struct batch *b)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 1);
	proto_pack_str(&pk, "instances");
	msgpack_pack_array(&pk, b->n);
	for (size_t i = 0; i < b->n; i++) {
		struct batch_item *it = &b->items[i];
		struct instance_record *rec = item_rec(it);
		char dir[4400];

		scope_instance_dir(it->name, dir, sizeof(dir));
		msgpack_pack_map(&pk, 18);
		proto_pack_kv_str(&pk, "name", it->name);
		proto_pack_kv_state(&pk, "state", rec && rec->deleted ? PROTO_STATE_DELETED
							 : stop_delay_shown_state(it->name, it->state));
		proto_pack_kv_str(&pk, "reason", rec && rec->deleted ? ""
					    : it->reason[0] ? it->reason
					    : helper_reason(B->helper, it->name));
		proto_pack_kv_str(&pk, "instance_type", it->instance_type);
		proto_pack_kv_str(&pk, "image", rec && rec->image ? rec->image : "");
		proto_pack_kv_uint(&pk, "cpus", rec ? rec->cpus : 0);
		proto_pack_kv_uint(&pk, "memory", rec ? rec->memory : 0);
		proto_pack_kv_uint(&pk, "disk", rec ? rec->disk : 0);
		proto_pack_str(&pk, "ipv4");
		if (it->ipv4.size)
			msgpack_sbuffer_write(&sb, it->ipv4.data, it->ipv4.size);
		else
			msgpack_pack_array(&pk, 0);
		proto_pack_kv_int(&pk, "ssh_port", it->ssh_port);
		proto_pack_kv_str(&pk, "ssh_host", it->ssh_host);
		proto_pack_kv_str(&pk, "scope", B->scope);
		proto_pack_kv_str(&pk, "driver", B->driver);
		proto_pack_kv_str(&pk, "created", rec && rec->created ? rec->created : "");
		proto_pack_kv_str(&pk, "mac", rec && rec->mac ? rec->mac : "");
		proto_pack_kv_str(&pk, "dir", dir);
		mount_pack_info(&pk, rec);
		proto_pack_str(&pk, "networks");
		msgpack_pack_array(&pk, rec ? rec->n_networks : 0);
		for (size_t j = 0; rec && j < rec->n_networks; j++) {
			msgpack_pack_map(&pk, 3);
			proto_pack_kv_str(&pk, "name", rec->networks[j].name);
			proto_pack_kv_str(&pk, "mode", rec->networks[j].mode ? rec->networks[j].mode
									    : "auto");
			proto_pack_kv_str(&pk, "mac", rec->networks[j].mac);
		}
	}
	creq_ok(b->r, &sb);
	msgpack_sbuffer_destroy(&sb);
	b->r = NULL;
	batch_free(b);
}

void op_info(struct creq *r, const msgpack_object *p)
{
	char **names;
	size_t n;
	struct batch *b;

	if (creq_names(r, p, true, &names, &n) < 0)
		return;
	b = batch_new(r, BK_INFO, names, n);
	if (!b)
		return;
	if (b->n == 0) {
		batch_answer_info(b);
		return;
	}
	b->pending = b->n + 1;
	for (size_t i = 0; i < b->n; i++) {
		struct batch_item *it = &b->items[i];
		struct instance_record *rec = item_rec(it);
		msgpack_sbuffer sb;
		msgpack_packer pk;

		if (rec->deleted) {
			it->state = PROTO_STATE_DELETED;
			item_done(it, 0, NULL);
			continue;
		}
		if (!instance_dir_exists(it->name)) {
			it->state = PROTO_STATE_UNKNOWN;
			creq_warning(r, "the folder of %s is missing (removed outside vmctl?); "
				     "vmctl delete --purge %s forgets it", it->name, it->name);
			item_done(it, 0, NULL);
			continue;
		}
		scope_pack_instance_params(&sb, rec, 0, &pk);
		if (!helper_call(B->helper, "instance.info", &sb, 15.0, item_on_info, it)) {
			it->state = PROTO_STATE_UNKNOWN;
			item_done(it, 0, NULL);
		}
		msgpack_sbuffer_destroy(&sb);
	}
	if (--b->pending == 0)
		batch_answer(b);
}

/* ---- list ---- */

struct list_req {
	struct creq *r;         /* NULL once answered */
	unsigned gen;
	bool all_scopes;
	bool answered;
	bool call_done;
	ev_timer wait_w;
	void (*then)(void);     /* reconcile: what to do afterwards */
	struct dir_set dirs;    /* the scope's instance folders when the list began */
};

/* ipv4: the helper's array of addresses for this instance, or NULL;
 * reason: why it is in that state ("" if nothing is said). */
static void list_pack_scope_entry(msgpack_packer *pk, const struct instance_record *rec,
				  enum proto_state state, const char *scope, const char *driver,
				  const msgpack_object *ipv4, const char *reason)
{
	msgpack_pack_map(pk, 7);
	proto_pack_kv_str(pk, "name", rec->name);
	proto_pack_kv_state(pk, "state", state);
	proto_pack_kv_str(pk, "reason", reason);
	proto_pack_str(pk, "ipv4");
	if (ipv4 && ipv4->type == MSGPACK_OBJECT_ARRAY)
		msgpack_pack_object(pk, *ipv4);
	else
		msgpack_pack_array(pk, 0);
	proto_pack_kv_str(pk, "image", rec->image ? rec->image : "");
	proto_pack_kv_str(pk, "scope", scope);
	proto_pack_kv_str(pk, "driver", driver);
}

/* Records of the scopes that are not active, read from disk. */
int list_other_scopes(struct registry **out, char ***scopes, size_t *n, char *why, size_t whylen)
{
	char dir[4200];
	DIR *dh;
	struct dirent *de;
	int unreadable = 0;

	*out = NULL;
	*scopes = NULL;
	*n = 0;
	snprintf(dir, sizeof(dir), "%s/scopes", B->data_dir);
	dh = opendir(dir);
	if (!dh)
		return 0;
	while ((de = readdir(dh)) != NULL) {
		char path[4500], err[1024];
		struct registry reg = {0};
		struct registry *grown;
		char **sgrown;

		if (de->d_name[0] == '.' || strcmp(de->d_name, B->scope) == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s/instances.yaml", dir, de->d_name);
		if (access(path, F_OK) != 0)
			continue;
		if (registry_load_err(path, &reg, err, sizeof(err)) < 0) {
			vlog(LOG_ERROR_, "%s", err);
			if (unreadable++ == 0 && why)
				snprintf(why, whylen, "%s", err);
			continue;
		}
		grown = realloc(*out, (*n + 1) * sizeof(*grown));
		if (grown)
			*out = grown;
		sgrown = realloc(*scopes, (*n + 1) * sizeof(*sgrown));
		if (sgrown)
			*scopes = sgrown;
		if (!grown || !sgrown || !(sgrown[*n] = strdup(de->d_name))) {
			registry_free(&reg);
			break;
		}
		grown[*n] = reg;
		(*n)++;
	}
	closedir(dh);
	return unreadable;
}

/* ipv4: NULL, or one entry per record of B->reg (the helper's addresses). */
static void list_answer(struct list_req *l, bool live, const msgpack_object *const *ipv4)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct registry *others = NULL;
	char **scopes = NULL;
	size_t n_others = 0, total = B->reg.n, n_elsewhere = 0;
	struct dir_set fresh = {0};
	const struct dir_set *dirs = &l->dirs;

	if (l->all_scopes || B->reg.n == 0) {
		char why[1024];
		int unreadable = list_other_scopes(&others, &scopes, &n_others, why, sizeof(why));

		if (unreadable && l->all_scopes)
			creq_warning(l->r, "%d other scope(s) left out: their registry could not be "
				     "loaded (%s)", unreadable, why);
		for (size_t i = 0; i < n_others; i++)
			if (l->all_scopes)
				total += others[i].n;
			else if (others[i].n)
				n_elsewhere++;
	}
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, n_elsewhere ? 4 : 3);
	proto_pack_kv_str(&pk, "scope", B->scope);
	proto_pack_kv_str(&pk, "driver", B->driver);
	if (n_elsewhere) {
		/* An empty scope says where the instances are (they only seem lost). */
		proto_pack_str(&pk, "other_scopes");
		msgpack_pack_array(&pk, n_elsewhere);
		for (size_t s = 0; s < n_others; s++) {
			char driver[DRIVER_NAME_MAX + 1];

			if (!others[s].n)
				continue;
			scope_last_driver(scopes[s], driver, sizeof(driver));
			msgpack_pack_map(&pk, 3);
			proto_pack_kv_str(&pk, "scope", scopes[s]);
			proto_pack_kv_str(&pk, "driver", driver);
			proto_pack_kv_uint(&pk, "instances", others[s].n);
		}
	}
	proto_pack_str(&pk, "instances");
	msgpack_pack_array(&pk, total);
	if (l->gen != B->scope_gen) {
		/* The scope changed while the helper was asked: its own folders. */
		dir_set_load(&fresh);
		dirs = &fresh;
	}
	for (size_t i = 0; i < B->reg.n; i++) {
		const struct instance_record *rec = &B->reg.v[i];
		enum proto_state state = scope_shown_state(rec);

		if (!rec->deleted && (!live || !dir_set_has(dirs, rec->name)))
			state = PROTO_STATE_UNKNOWN;
		list_pack_scope_entry(&pk, rec, stop_delay_shown_state(rec->name, state), B->scope,
				      B->driver, ipv4 && live ? ipv4[i] : NULL,
				      rec->deleted ? "" : helper_reason(B->helper, rec->name));
	}
	for (size_t s = 0; s < n_others; s++) {
		char driver[DRIVER_NAME_MAX + 1];

		scope_last_driver(scopes[s], driver, sizeof(driver));
		for (size_t i = 0; l->all_scopes && i < others[s].n; i++)
			list_pack_scope_entry(&pk, &others[s].v[i], scope_shown_state(&others[s].v[i]),
					      scopes[s], driver, NULL, "");
		registry_free(&others[s]);
		free(scopes[s]);
	}
	free(others);
	free(scopes);
	dir_set_free(&fresh);
	creq_ok(l->r, &sb);
	msgpack_sbuffer_destroy(&sb);
	l->r = NULL;
	l->answered = true;
}

/* One warning, however many folders are missing. */
static void list_warn_missing(struct creq *r, const struct dir_set *dirs)
{
	char names[512] = "";
	const char *first = NULL;
	size_t n = 0, used = 0, shown = 0;

	for (size_t i = 0; i < B->reg.n; i++) {
		const struct instance_record *rec = &B->reg.v[i];

		if (rec->deleted || dir_set_has(dirs, rec->name))
			continue;
		if (!first)
			first = rec->name;
		n++;
		if (shown < 5 && used < sizeof(names)) {
			used += (size_t)snprintf(names + used, sizeof(names) - used, "%s%s",
						 used ? ", " : "", rec->name);
			shown++;
		}
	}
	if (n == 1)
		creq_warning(r, "the folder of %s is missing (removed outside vmctl?); "
			     "vmctl delete --purge %s forgets it", first, first);
	else if (n > 1)
		creq_warning(r, "the folders of %zu instances are missing (%s%s; removed outside "
			     "vmctl?); vmctl delete --purge NAME forgets one",
			     n, names, n > shown ? ", ..." : "");
}

/* Folders the registry lost (orphan.c): said on every list until recovered. */
static void list_warn_orphans(struct creq *r)
{
	char **names, shown[512] = "";
	size_t n, n_orphans = 0, used = 0;

	if (orphans_find(B->scope_dir, &B->reg, &names, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		/* Being launched or cloned, it is not lost. */
		if (busy_find(names[i]))
			continue;
		if (n_orphans++ < 5 && used < sizeof(shown))
			used += (size_t)snprintf(shown + used, sizeof(shown) - used, "%s%s",
						 used ? ", " : "", names[i]);
	}
	if (n_orphans == 1)
		creq_warning(r, "the folder %s/instances/%s has no record in %s (was the file damaged?); "
			     "vmctl recover %s rebuilds one from the folder",
			     B->scope_dir, shown, B->registry_path, shown);
	else if (n_orphans > 1)
		creq_warning(r, "%zu folders in %s/instances have no record in %s (%s%s; was the file "
			     "damaged?); vmctl recover NAME rebuilds one from its folder",
			     n_orphans, B->scope_dir, B->registry_path, shown, n_orphans > 5 ? ", ..." : "");
	names_free(names, n);
}

static void list_maybe_free(struct list_req *l)
{
	if (l->answered && l->call_done) {
		ev_timer_stop(B->loop, &l->wait_w);
		dir_set_free(&l->dirs);
		free(l);
		if (B->reg.n > 64)
			malloc_trim(0);
	}
}

static void list_on_wait_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct list_req *l = w->data;

	if (l->r) {
		creq_warning(l->r,
			     "the %s helper did not answer within %.0f s; showing the last known "
			     "states as unknown",
			     B->driver, BROKER_LIST_WAIT);
		list_answer(l, false, NULL);
	}
	list_maybe_free(l);
}

static void list_on_result(void *ud, int err, const char *errmsg, const msgpack_object *result)
{
	struct list_req *l = ud;
	const msgpack_object *arr = proto_map_get(result, "instances");
	const msgpack_object **ipv4 = NULL;
	bool changed = false;
	size_t hint = 0;

	l->call_done = true;
	if (err == 0 && arr && arr->type == MSGPACK_OBJECT_ARRAY && l->gen == B->scope_gen) {
		ipv4 = calloc(B->reg.n ? B->reg.n : 1, sizeof(*ipv4));
		for (uint32_t i = 0; i < arr->via.array.size; i++) {
			const msgpack_object *e = &arr->via.array.ptr[i];
			char name[INSTANCE_NAME_MAX + 1];
			enum proto_state state;
			struct instance_record *rec;

			if (proto_get_str(e, "name", name, sizeof(name)) < 0 ||
			    proto_get_state(e, "state", &state) < 0)
				continue;
			/* Answers come in request order, which is registry order:
			 * look just past the last match before searching. */
			if (hint < B->reg.n && strcmp(B->reg.v[hint].name, name) == 0)
				rec = &B->reg.v[hint];
			else
				rec = registry_find(&B->reg, name);
			if (rec) {
				hint = (size_t)(rec - B->reg.v) + 1;
				if (ipv4)
					ipv4[rec - B->reg.v] = proto_map_get(e, "ipv4");
				helper_reason_set(B->helper, name, proto_map_get(e, "reason"));
			}
			/* A launch in progress owns the state it reports. */
			if (rec && !rec->deleted && !busy_find(name) && scope_set_state(rec, state))
				changed = true;
		}
		if (changed)
			scope_save();
	}
	if (l->r) {
		if (err < 0)
			creq_warning(l->r, "could not get states from the %s helper (%s); showing the "
				     "last known states as unknown", B->driver, errmsg);
		list_answer(l, err == 0, ipv4);
	} else if (err < 0) {
		vlog(LOG_WARN_, "reconciling states: %s", errmsg);
	}
	free(ipv4);
	if (l->then && l->gen == B->scope_gen)
		l->then();
	l->answered = true;
	list_maybe_free(l);
}

/* One instances.list call with every live record. */
static void list_start(struct list_req *l)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	size_t n = 0;

	for (size_t i = 0; i < B->reg.n; i++)
		if (!B->reg.v[i].deleted && dir_set_has(&l->dirs, B->reg.v[i].name))
			n++;
	if (n == 0) {
		l->call_done = true;
		if (l->r)
			list_answer(l, true, NULL);
		if (l->then)
			l->then();
		l->answered = true;
		list_maybe_free(l);
		return;
	}
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 1);
	proto_pack_str(&pk, "instances");
	msgpack_pack_array(&pk, n);
	for (size_t i = 0; i < B->reg.n; i++)
		if (!B->reg.v[i].deleted && dir_set_has(&l->dirs, B->reg.v[i].name))
			scope_pack_instance(&pk, &B->reg.v[i]);
	if (l->r) {
		ev_timer_init(&l->wait_w, list_on_wait_timer, BROKER_LIST_WAIT, 0);
		l->wait_w.data = l;
		ev_timer_start(B->loop, &l->wait_w);
	}
	if (!helper_call(B->helper, "instances.list", &sb, BROKER_LIST_DEADLINE, list_on_result, l))
		list_on_result(l, PROTO_E_NOMEM, "out of memory", NULL);
	msgpack_sbuffer_destroy(&sb);
}

void op_list(struct creq *r, const msgpack_object *p)
{
	struct list_req *l = calloc(1, sizeof(*l));

	if (!l) {
		creq_fail(r, PROTO_E_NOMEM, "out of memory");
		return;
	}
	l->r = r;
	l->gen = B->scope_gen;
	proto_get_bool(p, "all_scopes", &l->all_scopes);
	dir_set_load(&l->dirs);
	list_warn_missing(r, &l->dirs);
	list_warn_orphans(r);
	list_start(l);
}

/* ---- reconciliation after a helper (re)start ---- */

static void restore_on_started(void *ud, int err, const char *errmsg, const msgpack_object *result)
{
	char *name = ud;
	struct instance_record *rec = registry_find(&B->reg, name);

	if (err < 0) {
		vlog(LOG_WARN_, "could not restore %s after the driver switch: %s", name, errmsg);
	} else if (rec) {
		enum proto_state state = PROTO_STATE_RUNNING;

		proto_get_state(result, "state", &state);
		scope_set_state(rec, state);
		scope_save();
		vlog(LOG_INFO_, "restored %s (%s)", name, proto_state_name(state));
	}
	free(name);
}

void ops_restore_switched(void)
{
	bool changed = false;

	/* A helper restarted while a switch brings the instances to rest:
	 * the switch decides what runs again. */
	if (B->switching)
		return;

	for (size_t i = 0; i < B->reg.n; i++) {
		struct instance_record *rec = &B->reg.v[i];
		bool was_running;

		if (!rec->has_switch_state)
			continue;
		was_running = rec->switch_state == PROTO_STATE_RUNNING;
		rec->has_switch_state = false;
		changed = true;
		if (was_running && !rec->deleted && !util_state_active(rec->state)) {
			msgpack_sbuffer sb;
			msgpack_packer pk;
			char *name = strdup(rec->name);

			if (!name)
				continue;
			scope_pack_instance_params(&sb, rec, 0, &pk);
			vlog(LOG_INFO_, "restoring %s to running", rec->name);
			if (!helper_call(B->helper, "instance.start", &sb, BROKER_START_DEADLINE,
					 restore_on_started, name))
				free(name);
			msgpack_sbuffer_destroy(&sb);
		}
	}
	if (changed)
		scope_save();
}

/* Once the states are known: instances to restore, classic mounts to
 * establish again (after a broker restart their sessions died with it). */
static void reconcile_then(void)
{
	ops_restore_switched();
	classic_resume_all();
}

void ops_reconcile(void)
{
	struct list_req *l = calloc(1, sizeof(*l));

	if (!l)
		return;
	l->gen = B->scope_gen;
	l->then = reconcile_then;
	dir_set_load(&l->dirs);
	list_start(l);
}

/* ---- ssh_info, networks, find, version ---- */

struct ssh_info_req {
	struct creq *r;
	char name[INSTANCE_NAME_MAX + 1];
	bool probe; /* say whether SSH is up (op-exec.c) */
};

static void ssh_info_on_result(void *ud, int err, const char *errmsg, const msgpack_object *result)
{
	struct ssh_info_req *s = ud;
	enum proto_state state = PROTO_STATE_UNKNOWN;
	char host[64] = "127.0.0.1";
	int64_t port = 0;
	msgpack_sbuffer sb;
	msgpack_packer pk;

	if (err < 0) {
		creq_fail(s->r, err, "could not get the SSH address of %s: %s", s->name, errmsg);
		goto out_free;
	}
	proto_get_state(result, "state", &state);
	proto_get_str(result, "ssh_host", host, sizeof(host));
	proto_get_int(result, "ssh_port", &port);
	if (state != PROTO_STATE_RUNNING) {
		creq_fail(s->r, PROTO_E_INVALID_STATE,
			  "%s is not running (it is %s); start it with: vmctl start %s", s->name,
			  proto_state_name(state), s->name);
		goto out_free;
	}
	if (port <= 0) {
		creq_fail(s->r, PROTO_E_UNAVAILABLE, "the %s driver does not tell where SSH of %s listens",
			  B->driver, s->name);
		goto out_free;
	}
	if (s->probe && exec_probe_ssh(s->r, host, port))
		goto out_free;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 4);
	proto_pack_kv_str(&pk, "host", host);
	proto_pack_kv_int(&pk, "port", port);
	proto_pack_kv_str(&pk, "user", "ubuntu");
	proto_pack_kv_str(&pk, "key", B->ssh_key);
	creq_ok(s->r, &sb);
	msgpack_sbuffer_destroy(&sb);
out_free:
	free(s);
}

void op_ssh_info(struct creq *r, const msgpack_object *p)
{
	struct ssh_info_req *s;
	struct instance_record *rec;
	msgpack_sbuffer sb;
	msgpack_packer pk;
	char name[INSTANCE_NAME_MAX + 1] = "";
	int rc = proto_get_str(p, "name", name, sizeof(name));

	if (rc == PROTO_E_INVALID_ARGUMENT) {
		creq_fail(r, PROTO_E_NOT_FOUND, "no such instance (the name is too long)");
		return;
	}
	if (rc < 0 || !name[0]) {
		creq_fail(r, PROTO_E_INVALID_ARGUMENT, "ssh_info needs an instance name");
		return;
	}
	rec = opx_record(r, name);
	if (!rec)
		return;
	s = calloc(1, sizeof(*s));
	if (!s) {
		creq_fail(r, PROTO_E_NOMEM, "out of memory");
		return;
	}
	s->r = r;
	snprintf(s->name, sizeof(s->name), "%s", name);
	proto_get_bool(p, "probe", &s->probe);
	scope_pack_instance_params(&sb, rec, 0, &pk);
	if (!helper_call(B->helper, "instance.info", &sb, 15.0, ssh_info_on_result, s)) {
		free(s);
		creq_fail(r, PROTO_E_NOMEM, "out of memory");
	}
	msgpack_sbuffer_destroy(&sb);
}

static void networks_on_result(void *ud, int err, const char *errmsg, const msgpack_object *result)
{
	struct creq *r = ud;
	msgpack_sbuffer sb;
	msgpack_packer pk;

	if (err < 0) {
		creq_fail(r, err, "%s", errmsg);
		return;
	}
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_object(&pk, *result);
	creq_ok(r, &sb);
	msgpack_sbuffer_destroy(&sb);
}

void op_networks(struct creq *r, const msgpack_object *p)
{
	if (!broker_has_feature(PROTO_FEAT_EXTRA_NETWORKS)) {
		char msg[512];

		driver_refusal(PROTO_FEAT_EXTRA_NETWORKS, B->driver, msg, sizeof(msg));
		creq_fail(r, PROTO_E_UNSUPPORTED, "%s", msg);
		return;
	}
	if (!helper_call(B->helper, "networks.list", NULL, BROKER_SHORT_DEADLINE, networks_on_result, r))
		creq_fail(r, PROTO_E_NOMEM, "out of memory");
}

static void find_on_done(void *ud, int err, const char *errmsg, const char *packed, size_t len)
{
	struct creq *r = ud;
	msgpack_sbuffer sb = {.size = len, .data = (char *)packed, .alloc = len};

	if (err < 0) {
		creq_fail(r, err, "%s", errmsg ? errmsg : proto_strerror(err));
		return;
	}
	creq_ok(r, &sb);
}

void op_find(struct creq *r, const msgpack_object *p)
{
	char query[256] = "", remote[64] = "", what[330];
	bool force = false, unsupported = false;

	proto_get_bool(p, "force_update", &force);
	proto_get_bool(p, "show_unsupported", &unsupported);
	proto_get_str(p, "query", query, sizeof(query));
	proto_get_str(p, "remote", remote, sizeof(remote));
	/* The CLI sends REMOTE:STRING split in two; the resolver takes it joined. */
	if (remote[0])
		snprintf(what, sizeof(what), "%s:%s", remote, query);
	else
		snprintf(what, sizeof(what), "%s", query);
	image_find_with(B->images, what,
			(force ? IMAGE_FIND_FORCE_UPDATE : 0) | (unsupported ? IMAGE_FIND_UNSUPPORTED : 0),
			find_on_done, r);
}

void op_version(struct creq *r, const msgpack_object *p)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	const char *hv = "", *state = helper_state_name(HELPER_STOPPED);
	char problem[1400] = "";

	if (B->helper && helper_get_state(B->helper) == HELPER_READY)
		hv = helper_hello(B->helper)->helper_version;
	if (B->helper) {
		state = helper_state_name(helper_get_state(B->helper));
		helper_describe_problem(B->helper, problem, sizeof(problem));
	} else if (B->switching) {
		state = helper_state_name(HELPER_STARTING);
		snprintf(problem, sizeof(problem), "%s", B->switch_note);
	}
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 7 + (problem[0] != '\0'));
	proto_pack_kv_str(&pk, "vmctld", VMCTL_VERSION);
	proto_pack_kv_str(&pk, "driver", B->driver);
	proto_pack_kv_str(&pk, "helper_version", hv);
	proto_pack_kv_int(&pk, "protocol", PROTO_VERSION);
	proto_pack_kv_str(&pk, "scope", B->scope);
	/* What the broker knows of its helper, so that version explains a
	 * driver that does not work. */
	proto_pack_kv_str(&pk, "helper_state", state);
	proto_pack_kv_int(&pk, "pid", (int64_t)getpid());
	if (problem[0])
		proto_pack_kv_str(&pk, "helper_problem", problem);
	creq_ok(r, &sb);
	msgpack_sbuffer_destroy(&sb);
}
