/*
 * What the issue-4 operations (op-*.c) share: refusing a feature the active
 * driver lacks, finding the one instance a request is about, and calling
 * the helper with an instance map.
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "broker.h"

bool opx_refuse_feature(struct creq *r, unsigned feature)
{
	char msg[512];

	if (broker_has_feature(feature))
		return false;
	driver_refusal(feature, B->driver, msg, sizeof(msg));
	creq_fail(r, PROTO_E_UNSUPPORTED, "%s", msg);
	return true;
}

struct instance_record *opx_record(struct creq *r, const char *name)
{
	struct instance_record *rec = registry_find(&B->reg, name);

	if (!rec) {
		creq_fail(r, PROTO_E_NOT_FOUND, "instance \"%s\" does not exist (driver %s, scope %s)",
			  name, B->driver, B->scope);
		return NULL;
	}
	if (rec->deleted) {
		creq_fail(r, PROTO_E_INVALID_STATE,
			  "%s is deleted; recover it first with: vmctl recover %s", name, name);
		return NULL;
	}
	return rec;
}

struct instance_record *opx_instance(struct creq *r, const char *name)
{
	struct instance_record *rec;
	struct busy *busy;
	char dir[4400];
	struct stat st;

	if (!name[0]) {
		creq_fail(r, PROTO_E_INVALID_ARGUMENT, "name an instance");
		return NULL;
	}
	rec = opx_record(r, name);
	if (!rec)
		return NULL;
	busy = busy_find(name);
	if (busy) {
		creq_fail(r, PROTO_E_BUSY, "%s is busy (%s); try again later", name, busy->what);
		return NULL;
	}
	scope_instance_dir(name, dir, sizeof(dir));
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		creq_fail(r, PROTO_E_NOT_FOUND,
			  "the folder of %s is missing (removed outside vmctl?); "
			  "vmctl delete --purge %s forgets it",
			  name, name);
		return NULL;
	}
	return rec;
}

bool opx_refuse_unless_stopped(struct creq *r, const struct instance_record *rec, const char *what)
{
	if (rec->state == PROTO_STATE_STOPPED)
		return false;
	creq_fail(r, PROTO_E_INVALID_STATE, "%s is %s; %s needs it stopped (vmctl stop %s)",
		  rec->name, proto_state_name(rec->state), what, rec->name);
	return true;
}

struct hcall *opx_call(const struct instance_record *rec, const char *method, double deadline,
		       proto_result_fn cb, void *ud)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct hcall *c;

	scope_pack_instance_params(&sb, rec, 0, &pk);
	c = helper_call(B->helper, method, &sb, deadline, cb, ud);
	msgpack_sbuffer_destroy(&sb);
	return c;
}
