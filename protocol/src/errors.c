/* Error codes, feature bits and instance states: one table each, so names never drift. */
#include <string.h>

#include <vmproto/proto.h>

struct err_entry {
	int code;
	const char *name;
	const char *text;
};

static const struct err_entry err_table[] = {
	{PROTO_OK, "ok", "success"},
	{PROTO_E_INVALID_ARGUMENT, "invalid-argument", "invalid argument"},
	{PROTO_E_NOT_FOUND, "not-found", "not found"},
	{PROTO_E_ALREADY_EXISTS, "already-exists", "already exists"},
	{PROTO_E_UNSUPPORTED, "unsupported", "not supported"},
	{PROTO_E_BUSY, "busy", "busy"},
	{PROTO_E_TIMEOUT, "timeout", "timed out"},
	{PROTO_E_UNAVAILABLE, "unavailable", "unavailable"},
	{PROTO_E_DRIVER, "driver-error", "driver error"},
	{PROTO_E_PROTOCOL, "protocol-error", "protocol error"},
	{PROTO_E_INTERNAL, "internal", "internal error"},
	{PROTO_E_INVALID_STATE, "invalid-state", "invalid state"},
	{PROTO_E_NOMEM, "no-memory", "out of memory"},
	{PROTO_E_IO, "io-error", "input/output error"},
};

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static const struct err_entry *err_lookup(int code)
{
	for (size_t i = 0; i < ARRAY_LEN(err_table); i++)
		if (err_table[i].code == code)
			return &err_table[i];
	return NULL;
}

const char *proto_err_name(int code)
{
	const struct err_entry *e = err_lookup(code);

	return e ? e->name : "unknown-error";
}

const char *proto_strerror(int code)
{
	const struct err_entry *e = err_lookup(code);

	return e ? e->text : "unknown error";
}

int proto_err_from_name(const char *name)
{
	if (name)
		for (size_t i = 0; i < ARRAY_LEN(err_table); i++)
			if (strcmp(err_table[i].name, name) == 0)
				return err_table[i].code;
	return PROTO_E_INTERNAL;
}

struct feature_entry {
	unsigned bit;
	const char *name;
	const char *title;
};

static const struct feature_entry feature_table[PROTO_FEAT_COUNT] = {
	{PROTO_FEAT_NATIVE_MOUNTS, "native_mounts", "native mounts"},
	{PROTO_FEAT_EXTRA_NETWORKS, "extra_networks", "extra networks"},
	{PROTO_FEAT_SNAPSHOTS, "snapshots", "snapshots"},
	{PROTO_FEAT_CLONE, "clone", "clone"},
	{PROTO_FEAT_SUSPEND, "suspend", "suspend"},
	{PROTO_FEAT_NATIVE_MOUNTS_LIVE, "native_mounts_live", "native mounts on a running instance"},
	{PROTO_FEAT_EXEC, "exec", "commands without SSH"},
};

static const struct feature_entry *feature_lookup(unsigned bit)
{
	for (size_t i = 0; i < ARRAY_LEN(feature_table); i++)
		if (feature_table[i].bit == bit)
			return &feature_table[i];
	return NULL;
}

const char *proto_feature_name(unsigned bit)
{
	const struct feature_entry *f = feature_lookup(bit);

	return f ? f->name : NULL;
}

const char *proto_feature_title(unsigned bit)
{
	const struct feature_entry *f = feature_lookup(bit);

	return f ? f->title : NULL;
}

unsigned proto_feature_from_name(const char *name)
{
	if (name)
		for (size_t i = 0; i < ARRAY_LEN(feature_table); i++)
			if (strcmp(feature_table[i].name, name) == 0)
				return feature_table[i].bit;
	return 0;
}

bool proto_state_known(const char *state)
{
	enum proto_state s;

	return state && proto_state_from_name(state, &s) == 0 && proto_state_from_helper(s);
}
