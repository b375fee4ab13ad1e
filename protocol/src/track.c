/*
 * What the SDK keeps per instance for its helper: the operation in progress
 * (a busy claim and the transient state it shows) and the state last told
 * to the broker, so that a helper only says what changed. None of it has to
 * survive a restart: a new helper starts from "unknown".
 *
 * A hash table by name: instances.list looks up every instance of the scope
 * on every call.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vmproto/vmh.h>

struct tracked {
	char *name;
	bool known; /* state was told to (or seen by) the broker */
	enum proto_state state;
	char *reason; /* told (or seen) beside state, or NULL */
	bool busy;
	enum proto_state busy_state;
	struct tracked *next; /* in its bucket */
};

static struct {
	struct tracked **v;
	size_t n_buckets; /* a power of two, or 0 */
	size_t n;
} tr;

static size_t track_hash(const char *name)
{
	size_t h = 14695981039346656037u; /* FNV-1a */

	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		h = (h ^ *p) * 1099511628211u;
	return h;
}

static struct tracked **track_slot(const char *name)
{
	struct tracked **pp;

	if (!tr.n_buckets || !name)
		return NULL;
	for (pp = &tr.v[track_hash(name) & (tr.n_buckets - 1)]; *pp; pp = &(*pp)->next)
		if (!strcmp((*pp)->name, name))
			return pp;
	return NULL;
}

static struct tracked *track_find(const char *name)
{
	struct tracked **pp = track_slot(name);

	return pp ? *pp : NULL;
}

/* About one entry per bucket; if memory runs out the chains grow instead. */
static void track_grow(void)
{
	size_t nb = tr.n_buckets ? tr.n_buckets * 2 : 64;
	struct tracked **v = calloc(nb, sizeof(*v));

	if (!v)
		return;
	for (size_t i = 0; i < tr.n_buckets; i++) {
		while (tr.v[i]) {
			struct tracked *t = tr.v[i];
			size_t b = track_hash(t->name) & (nb - 1);

			tr.v[i] = t->next;
			t->next = v[b];
			v[b] = t;
		}
	}
	free(tr.v);
	tr.v = v;
	tr.n_buckets = nb;
}

/* The entry of name, made if need be; NULL when out of memory. */
static struct tracked *track_get(const char *name)
{
	struct tracked *t = track_find(name);
	size_t b;

	if (t || !name)
		return t;
	if (tr.n >= tr.n_buckets)
		track_grow();
	if (!tr.n_buckets)
		return NULL;
	t = calloc(1, sizeof(*t));
	if (!t || !(t->name = strdup(name))) {
		free(t);
		return NULL;
	}
	b = track_hash(name) & (tr.n_buckets - 1);
	t->next = tr.v[b];
	tr.v[b] = t;
	tr.n++;
	return t;
}

/* Drop the entry once it holds nothing. */
static void track_tidy(const char *name)
{
	struct tracked **pp = track_slot(name);
	struct tracked *t = pp ? *pp : NULL;

	if (!t || t->known || t->busy)
		return;
	*pp = t->next;
	free(t->name);
	free(t->reason);
	free(t);
	tr.n--;
}

/* ---- operations in progress ---- */

int vmh_busy_claim(const char *name, enum proto_state state, char *err, size_t errlen)
{
	struct tracked *t = track_get(name);

	if (!t) {
		snprintf(err, errlen, "out of memory");
		return PROTO_E_NOMEM;
	}
	if (t->busy) {
		snprintf(err, errlen, "instance '%s' is busy %s", name, proto_state_name(t->busy_state));
		return PROTO_E_BUSY;
	}
	t->busy = true;
	t->busy_state = state;
	return 0;
}

void vmh_busy_release(const char *name)
{
	struct tracked *t = track_find(name);

	if (!t)
		return;
	t->busy = false;
	track_tidy(name);
}

bool vmh_busy(const char *name, enum proto_state *state)
{
	struct tracked *t = track_find(name);

	if (!t || !t->busy)
		return false;
	if (state)
		*state = t->busy_state;
	return true;
}

/* ---- remembered states ---- */

static bool same_reason(const char *a, const char *b)
{
	if (!a || !a[0] || !b || !b[0])
		return (!a || !a[0]) && (!b || !b[0]);
	return strcmp(a, b) == 0;
}

/* Remember state and reason (copied; kept as it was if memory runs out). */
static void track_set(struct tracked *t, enum proto_state state, const char *reason)
{
	t->known = true;
	t->state = state;
	if (same_reason(t->reason, reason))
		return;
	free(t->reason);
	t->reason = reason && reason[0] ? strndup(reason, PROTO_REASON_MAX) : NULL;
}

void vmh_state_notify(const char *name, enum proto_state state)
{
	vmh_state_notify_why(name, state, NULL);
}

void vmh_state_notify_why(const char *name, enum proto_state state, const char *reason)
{
	struct tracked *t = track_get(name);
	enum proto_state old = t && t->known ? t->state : PROTO_STATE_UNKNOWN;
	const char *old_reason = t && t->known ? t->reason : NULL;

	if (old != state || !same_reason(old_reason, reason))
		vmh_state_changed_why(name, proto_state_name(old), proto_state_name(state), reason);
	if (t)
		track_set(t, state, reason);
}

void vmh_state_seen(const char *name, enum proto_state state)
{
	vmh_state_seen_why(name, state, NULL);
}

void vmh_state_seen_why(const char *name, enum proto_state state, const char *reason)
{
	struct tracked *t = track_get(name);

	if (t)
		track_set(t, state, reason);
}

bool vmh_state_last(const char *name, enum proto_state *state)
{
	struct tracked *t = track_find(name);

	if (!t || !t->known)
		return false;
	if (state)
		*state = t->state;
	return true;
}

void vmh_state_forget(const char *name)
{
	struct tracked *t = track_find(name);

	if (!t)
		return;
	t->known = false;
	free(t->reason);
	t->reason = NULL;
	track_tidy(name);
}

void vmh_state_each(void (*fn)(void *ud, const char *name, enum proto_state state), void *ud)
{
	for (size_t i = 0; i < tr.n_buckets; i++) {
		for (struct tracked *t = tr.v[i], *next; t; t = next) {
			/* fn may forget t, which frees it. */
			next = t->next;
			if (t->known)
				fn(ud, t->name, t->state);
		}
	}
}

void vmh_track_reset(void)
{
	for (size_t i = 0; i < tr.n_buckets; i++) {
		while (tr.v[i]) {
			struct tracked *t = tr.v[i];

			tr.v[i] = t->next;
			free(t->name);
			free(t->reason);
			free(t);
		}
	}
	free(tr.v);
	tr.v = NULL;
	tr.n_buckets = tr.n = 0;
}
