/*
 * Small pure functions of the broker, kept apart so unit tests can link them
 * without a loop, a helper or a data folder.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "broker.h"

unsigned backoff_next_ms(unsigned prev_ms, double uptime_s)
{
	/* Up that long, it is no crash loop: waiting would only delay users. */
	if (uptime_s >= BACKOFF_RESET_S)
		return 0;
	if (prev_ms == 0)
		return BACKOFF_FIRST_MS;
	if (prev_ms >= BACKOFF_MAX_MS / 2)
		return BACKOFF_MAX_MS;
	return prev_ms * 2;
}

void util_format_mac(const unsigned char rnd[3], char *buf, size_t len)
{
	snprintf(buf, len, "52:54:00:%02x:%02x:%02x", rnd[0], rnd[1], rnd[2]);
}

static const char *const util_adjectives[] = {
	"able",   "amber",  "bold",   "brave",  "bright", "calm",   "clever", "cosy",
	"crisp",  "dapper", "eager",  "fair",   "fancy",  "fine",   "gentle", "glad",
	"grand",  "happy",  "hardy",  "honest", "jolly",  "keen",   "kind",   "lively",
	"lucky",  "merry",  "mighty", "neat",   "nimble", "noble",  "plucky", "polite",
	"proud",  "quick",  "quiet",  "rapid",  "ready",  "robust", "sharp",  "shiny",
	"smart",  "snappy", "steady", "sturdy", "sunny",  "swift",  "tidy",   "vivid",
	"warm",   "wise",   "witty",  "zesty",
};
static const char *const util_nouns[] = {
	"badger",  "beaver",  "bison",  "crane",   "cricket", "dingo",  "dolphin", "eagle",
	"falcon",  "ferret",  "finch",  "gecko",   "gibbon",  "heron",  "ibex",    "jackal",
	"koala",   "lark",    "lemur",  "lynx",    "magpie",  "marmot", "marten",  "moose",
	"newt",    "ocelot",  "osprey", "otter",   "panda",   "pelican", "puffin", "quail",
	"raven",   "robin",   "salmon", "seal",    "shrew",   "sparrow", "stoat",  "swan",
	"tapir",   "tern",    "toucan", "turtle",  "walrus",  "weasel", "wombat",  "wren",
	"yak",     "zebra",
};

void util_pick_name(uint32_t rnd, char *buf, size_t len)
{
	size_t na = sizeof(util_adjectives) / sizeof(util_adjectives[0]);
	size_t nn = sizeof(util_nouns) / sizeof(util_nouns[0]);

	snprintf(buf, len, "%s-%s", util_adjectives[rnd % na], util_nouns[(rnd / na) % nn]);
}

void util_iso_time(time_t t, char *buf, size_t len)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void util_describe_status(int status, char *buf, size_t len)
{
	if (WIFSIGNALED(status))
		snprintf(buf, len, "killed by signal %d%s", WTERMSIG(status),
			 WCOREDUMP(status) ? ", core dumped" : "");
	else if (WIFEXITED(status))
		snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
	else
		snprintf(buf, len, "ended with wait status %d", status);
}

static void util_copy_word(char *dst, size_t dstlen, const char *src)
{
	size_t n = strcspn(src, " \t\r\n");

	if (n >= dstlen)
		n = dstlen - 1;
	memcpy(dst, src, n);
	dst[n] = '\0';
}

int util_parse_describe(const char *text, struct driver_info *d)
{
	const char *line = text;

	memset(d, 0, sizeof(*d));
	while (line && *line) {
		const char *eol = strchr(line, '\n');
		size_t n = eol ? (size_t)(eol - line) : strlen(line);
		char one[1024];

		if (n >= sizeof(one))
			n = sizeof(one) - 1;
		memcpy(one, line, n);
		one[n] = '\0';
		if (strncmp(one, "driver ", 7) == 0) {
			util_copy_word(d->driver, sizeof(d->driver), one + 7);
		} else if (strncmp(one, "scope ", 6) == 0) {
			util_copy_word(d->scope, sizeof(d->scope), one + 6);
		} else if (strncmp(one, "version ", 8) == 0) {
			util_copy_word(d->version, sizeof(d->version), one + 8);
		} else if (strncmp(one, "features", 8) == 0 && (one[8] == ' ' || one[8] == '\0')) {
			char *save = NULL;
			char *tok = strtok_r(one + 8, " ,\t\r", &save);

			for (; tok; tok = strtok_r(NULL, " ,\t\r", &save))
				d->features |= proto_feature_from_name(tok);
		}
		line = eol ? eol + 1 : NULL;
	}
	if (!d->scope[0])
		snprintf(d->scope, sizeof(d->scope), "%s", d->driver);
	/* Both name folders and files: DATA/scopes/SCOPE, vmctl-DRIVER-helper. */
	if (!driver_name_valid(d->driver) || !driver_name_valid(d->scope))
		return PROTO_E_PROTOCOL;
	d->described = true;
	return 0;
}

void util_random(void *buf, size_t len)
{
	unsigned char *p = buf;
	size_t got = 0;

	while (got < len) {
		ssize_t n = getrandom(p + got, len - got, GRND_NONBLOCK);

		if (n <= 0)
			break;
		got += (size_t)n;
	}
	if (got < len) {
		/* No entropy yet (early boot): names and MACs only need to differ. */
		unsigned seed = (unsigned)time(NULL) ^ ((unsigned)getpid() << 16);

		for (; got < len; got++) {
			seed = seed * 1103515245u + 12345u;
			p[got] = (unsigned char)(seed >> 16);
		}
	}
}

bool util_state_active(enum proto_state state)
{
	return state == PROTO_STATE_RUNNING || state == PROTO_STATE_STARTING ||
	       state == PROTO_STATE_RESTARTING;
}

int util_instance_key(const char *key, char *name, size_t namelen, char *prop, size_t proplen)
{
	const char *dot;
	size_t n;

	if (strncmp(key, "local.", 6) != 0)
		return PROTO_E_NOT_FOUND;
	key += 6;
	dot = strrchr(key, '.');
	if (!dot || dot == key)
		return PROTO_E_NOT_FOUND;
	if (strcmp(dot + 1, "cpus") != 0 && strcmp(dot + 1, "memory") != 0 &&
	    strcmp(dot + 1, "disk") != 0)
		return PROTO_E_NOT_FOUND;
	n = (size_t)(dot - key);
	if (n >= namelen || strlen(dot + 1) >= proplen || memchr(key, '.', n))
		return PROTO_E_NOT_FOUND;
	memcpy(name, key, n);
	name[n] = '\0';
	snprintf(prop, proplen, "%s", dot + 1);
	return 0;
}

/* A state value, where present and not nil, must be a protocol state. */
static int util_check_state_at(const msgpack_object *map, const char *key, const char *where,
			       char *why, size_t whylen)
{
	const msgpack_object *v = proto_map_get(map, key);
	char state[32], shown[SHOWN_TEXT_MAX * 4 + 8];

	if (!v || v->type == MSGPACK_OBJECT_NIL)
		return 0;
	if (v->type != MSGPACK_OBJECT_STR) {
		snprintf(why, whylen, "%s%s is not a string", where, key);
		return PROTO_E_PROTOCOL;
	}
	if (proto_obj_str(v, state, sizeof(state)) == 0 && proto_state_known(state))
		return 0;
	shown_text(v->via.str.ptr, v->via.str.size, shown, sizeof(shown));
	snprintf(why, whylen, "%s%s \"%s\" is not an instance state", where, key, shown);
	return PROTO_E_PROTOCOL;
}

int util_check_states(const msgpack_object *o, char *why, size_t whylen)
{
	static const char *const keys[] = { "state", "old", "new" };
	const msgpack_object *list;
	int rc;

	if (!o || o->type != MSGPACK_OBJECT_MAP)
		return 0;
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if ((rc = util_check_state_at(o, keys[i], "", why, whylen)) < 0)
			return rc;
	list = proto_map_get(o, "instances");
	if (!list || list->type != MSGPACK_OBJECT_ARRAY)
		return 0;
	for (uint32_t i = 0; i < list->via.array.size; i++)
		if ((rc = util_check_state_at(&list->via.array.ptr[i], "state", "instances: ", why,
					      whylen)) < 0)
			return rc;
	return 0;
}
