/*
 * NoCloud cloud-init seeds: our user-data (user "ubuntu" with the broker's
 * key), merged with the user's --cloud-init as a MIME multipart, and the
 * meta-data, and the network-config of an instance with extra networks.
 * Text here (unit-tested); launch.c writes user-data and meta-data and runs
 * genisoimage.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker.h"

/* Text appended to a growing malloc'd buffer; NULL stays NULL on ENOMEM. */
struct strbuf {
	char *s;
	size_t len;
	bool failed;
};

static void sb_add(struct strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_add(struct strbuf *b, const char *fmt, ...)
{
	va_list ap, ap2;
	int n;
	char *grown;

	if (b->failed)
		return;
	va_start(ap, fmt);
	va_copy(ap2, ap);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || !(grown = realloc(b->s, b->len + (size_t)n + 1))) {
		va_end(ap2);
		free(b->s);
		b->s = NULL;
		b->failed = true;
		return;
	}
	b->s = grown;
	vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap2);
	va_end(ap2);
	b->len += (size_t)n;
}

/* A key line is safe as a plain YAML scalar if it has none of YAML's
 * indicators; otherwise single-quote it. */
static void seed_add_key(struct strbuf *b, const char *indent, const char *key)
{
	bool plain = key[0] != '\0' && strchr("'\"!&*[]{}|>%@`#,?:-", key[0]) == NULL &&
		     !strstr(key, ": ") && !strstr(key, " #") && strcspn(key, "\r\n'\"") == strlen(key);

	if (plain) {
		sb_add(b, "%s- %s\n", indent, key);
		return;
	}
	sb_add(b, "%s- '", indent);
	for (const char *p = key; *p; p++) {
		if (*p == '\'')
			sb_add(b, "''");
		else if (*p != '\r' && *p != '\n')
			sb_add(b, "%c", *p);
	}
	sb_add(b, "'\n");
}

char *seed_user_data(const char *pubkey)
{
	struct strbuf b = {0};

	sb_add(&b, "#cloud-config\n"
		   "users:\n"
		   "  - default\n"
		   "  - name: ubuntu\n"
		   "    sudo: \"ALL=(ALL) NOPASSWD:ALL\"\n"
		   "    shell: /bin/bash\n"
		   "    ssh_authorized_keys:\n");
	seed_add_key(&b, "      ", pubkey);
	sb_add(&b, "ssh_authorized_keys:\n");
	seed_add_key(&b, "  ", pubkey);
	sb_add(&b, "manage_etc_hosts: true\n");
	return b.s;
}

char *seed_combine(const char *ours, const char *user_text, uint32_t boundary_rnd)
{
	struct strbuf b = {0};
	char boundary[64];
	size_t ulen;

	if (!user_text || strspn(user_text, " \t\r\n") == strlen(user_text))
		return strdup(ours);
	/* The boundary must not occur in either part. */
	for (;;) {
		snprintf(boundary, sizeof(boundary), "==vmctl-%08x==", boundary_rnd);
		if (!strstr(user_text, boundary) && !strstr(ours, boundary))
			break;
		boundary_rnd = boundary_rnd * 2654435761u + 1;
	}
	ulen = strlen(user_text);
	sb_add(&b,
	       "Content-Type: multipart/mixed; boundary=\"%s\"\n"
	       "MIME-Version: 1.0\n"
	       "\n"
	       "--%s\n"
	       "Content-Type: text/cloud-config; charset=\"us-ascii\"\n"
	       "MIME-Version: 1.0\n"
	       "Content-Transfer-Encoding: 7bit\n"
	       "Content-Disposition: attachment; filename=\"vmctl.cfg\"\n"
	       "\n"
	       "%s"
	       "\n"
	       "--%s\n"
	       "Content-Type: text/cloud-config; charset=\"utf-8\"\n"
	       "MIME-Version: 1.0\n"
	       "Content-Transfer-Encoding: 8bit\n"
	       "Content-Disposition: attachment; filename=\"user-data.cfg\"\n"
	       "Merge-Type: list(append)+dict(no_replace,recurse_list)+str()\n"
	       "\n"
	       "%s%s"
	       "\n"
	       "--%s--\n",
	       boundary, boundary, ours, boundary, user_text,
	       ulen && user_text[ulen - 1] == '\n' ? "" : "\n", boundary);
	return b.s;
}

char *seed_meta_data(const char *name, const char *instance_id)
{
	struct strbuf b = {0};

	sb_add(&b, "instance-id: %s\nlocal-hostname: %s\n", instance_id, name);
	return b.s;
}

/*
 * The default NIC gets set-name too: a guest whose cloud-init renders
 * ifupdown configuration names interfaces by the key otherwise, and the
 * images vmctl boots name their first NIC eth0 (net.ifnames=0). Manual NICs
 * are only named, so the user finds them by a stable name.
 */
char *seed_network_config(const char *default_mac, const struct network_record *nets, size_t n)
{
	struct strbuf b = {0};

	sb_add(&b, "version: 2\n"
		   "ethernets:\n"
		   "  default:\n"
		   "    match:\n"
		   "      macaddress: \"%s\"\n"
		   "    set-name: eth0\n"
		   "    dhcp4: true\n",
	       default_mac ? default_mac : "");
	for (size_t i = 0; i < n; i++) {
		sb_add(&b, "  extra%zu:\n"
			   "    match:\n"
			   "      macaddress: \"%s\"\n"
			   "    set-name: extra%zu\n",
		       i, nets[i].mac ? nets[i].mac : "", i);
		if (nets[i].mode && !strcmp(nets[i].mode, "manual"))
			continue;
		sb_add(&b, "    dhcp4: true\n"
			   "    dhcp4-overrides:\n"
			   "      route-metric: 200\n"
			   "    optional: true\n");
	}
	return b.s;
}

int seed_write_network_config(const char *dir, const struct instance_record *rec, char *err,
			      size_t errlen)
{
	char path[4400];
	char *text;
	int rc;

	snprintf(path, sizeof(path), "%s/network-config", dir);
	if (rec->n_networks == 0) {
		unlink(path);
		return 0;
	}
	text = seed_network_config(rec->mac, rec->networks, rec->n_networks);
	if (!text) {
		snprintf(err, errlen, "out of memory");
		return PROTO_E_NOMEM;
	}
	rc = atomic_write_file(path, text, strlen(text), 0600);
	free(text);
	if (rc < 0)
		snprintf(err, errlen, "cannot write %s: %s", path, proto_strerror(rc));
	return rc;
}
