/* Instance states: one table of names, so that no state is spelt twice. */
#include <string.h>

#include <vmproto/proto.h>

static const char *const state_names[PROTO_STATE_COUNT] = {
	[PROTO_STATE_UNKNOWN] = "unknown",
	[PROTO_STATE_RUNNING] = "running",
	[PROTO_STATE_STOPPED] = "stopped",
	[PROTO_STATE_SUSPENDED] = "suspended",
	[PROTO_STATE_STARTING] = "starting",
	[PROTO_STATE_RESTARTING] = "restarting",
	[PROTO_STATE_SUSPENDING] = "suspending",
	[PROTO_STATE_STOPPING] = "stopping",
	[PROTO_STATE_DELETED] = "deleted",
	[PROTO_STATE_DELAYED_SHUTDOWN] = "delayed shutdown",
};

const char *proto_state_name(enum proto_state state)
{
	if ((unsigned)state >= PROTO_STATE_COUNT)
		return state_names[PROTO_STATE_UNKNOWN];
	return state_names[state];
}

int proto_state_from_name(const char *name, enum proto_state *out)
{
	for (unsigned i = 0; name && i < PROTO_STATE_COUNT; i++) {
		if (strcmp(name, state_names[i]) == 0) {
			*out = (enum proto_state)i;
			return 0;
		}
	}
	return PROTO_E_INVALID_ARGUMENT;
}

bool proto_state_from_helper(enum proto_state state)
{
	return (unsigned)state < PROTO_STATE_COUNT && state != PROTO_STATE_DELETED &&
	       state != PROTO_STATE_DELAYED_SHUTDOWN;
}

int proto_get_state(const msgpack_object *map, const char *key, enum proto_state *out)
{
	char name[32];
	int rc = proto_get_str(map, key, name, sizeof(name));

	if (rc == PROTO_E_NOT_FOUND)
		return rc;
	if (rc < 0)
		return PROTO_E_INVALID_ARGUMENT;
	return proto_state_from_name(name, out);
}

void proto_pack_kv_state(msgpack_packer *pk, const char *key, enum proto_state state)
{
	proto_pack_kv_str(pk, key, proto_state_name(state));
}
