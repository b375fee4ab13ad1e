/*
 * libvmcommon: what vmctl, vmctld and the helpers share beyond the protocol.
 * One section per file. Functions return 0 or a negative PROTO_E_* code
 * (vmproto/proto.h) and, where they take err/errlen, a sentence for the user.
 */
#ifndef VMCTL_COMMON_H
#define VMCTL_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <vmproto/proto.h>

#define VMCTL_VERSION "0.1.0"

/* ---- atomic.c ---- */

/*
 * Replace path with data atomically: write a temp file beside it, fsync,
 * rename over path, fsync the folder. A crash at any instant leaves either
 * the old or the new file, never a torn one.
 */
int atomic_write_file(const char *path, const void *data, size_t len, mode_t mode);
/* Tests only: called after the temp file is written and before the rename. */
extern void (*atomic_write_test_hook)(const char *tmp_path);
/* mkdir -p with mode for the created components. */
int mkdir_p(const char *path, mode_t mode);
/* rm -rf, refusing "/" and ""; PROTO_E_INVALID_STATE (nothing removed)
 * when a folder inside it is a mount point. */
int remove_tree(const char *path);
/* Read a whole file (NUL-terminated, *len without the NUL); max bytes or PROTO_E_INVALID_ARGUMENT. */
int read_file(const char *path, size_t max, char **out, size_t *len);

/* ---- validate.c ---- */

#define INSTANCE_NAME_MAX PROTO_NAME_MAX
#define MIN_MEMORY PROTO_MEMORY_MIN
#define MIN_DISK (1ull << 30)
#define MAX_CPUS 1024

/* RFC 1123 label: 1-63 of [a-z0-9-], starting with a letter, not ending with '-'.
 * (Upper case is refused with a hint, as Multipass does.) */
int validate_instance_name(const char *name, char *err, size_t errlen);
/* The same for the len bytes at name (not NUL-terminated: "NAME:PATH"),
 * whatever their length: one too long is refused as such, shown cut. */
int validate_instance_name_n(const char *name, size_t len, char *err, size_t errlen);
/* A host network as local.bridged-network names it: 1-64 ASCII letters,
 * digits, '-', '_', '.' and single spaces between words ("Default Switch"),
 * starting and ending with a letter or digit; nothing a shell or an option
 * parser reads specially. PROTO_E_INVALID_ARGUMENT with why (a phrase). */
#define NETWORK_NAME_SETTING_MAX 64
int validate_network_name(const char *name, char *why, size_t whylen);
/* "52:54:00:12:34:56": six hex pairs, unicast, not all zero. */
int validate_mac(const char *mac, char *err, size_t errlen);
/* text[0..n) made safe to quote in a message or a log line: control
 * characters, NUL, '"' and '\\' as \\n, \\t or \\xNN; cut after
 * SHOWN_TEXT_MAX bytes with "...". buf is always NUL-terminated. */
#define SHOWN_TEXT_MAX 40
void shown_text(const char *text, size_t n, char *buf, size_t len);
/* "512M", "1G", "1.5G", "10GiB", "1024K", "2048" (bytes). Suffixes K M G T,
 * optional "B"/"iB", powers of 1024. PROTO_E_INVALID_ARGUMENT on anything else. */
int parse_size(const char *text, uint64_t *bytes, char *err, size_t errlen);
/* "1.0GiB", "512.0MiB" */
void format_size(uint64_t bytes, char *buf, size_t len);
/* Parse the cloud-init user-data text: must be YAML whose root is a mapping
 * (or empty). PROTO_E_INVALID_ARGUMENT with the YAML error and line. */
int cloudinit_validate(const char *text, char *err, size_t errlen);
/* "90s", "30m", "6h", "7d", "2w" (a positive count and one unit) -> seconds;
 * "never" -> 0. PROTO_E_INVALID_ARGUMENT on anything else. */
int parse_duration(const char *text, uint64_t *seconds, char *err, size_t errlen);

/* ---- settings.c ---- */

struct setting {
	char *key;
	char *value;
};
struct settings {
	struct setting *v;
	size_t n;
};

/* Missing file: empty settings, 0. */
int settings_load(const char *path, struct settings *s);
int settings_save(const char *path, const struct settings *s);
/* The stored value, else the key's default, else NULL. */
const char *settings_get(const struct settings *s, const char *key);
/* Validate and store. Known keys only (settings_known_keys); values checked
 * (local.driver: a driver name or alias, stored canonical). */
int settings_set(struct settings *s, const char *key, const char *value, char *err, size_t errlen);
void settings_free(struct settings *s);
/* settings_load() that also says what is wrong with a bad file:
 * "FILE: line L, column C: what". (settings_load logs that sentence.) */
int settings_load_err(const char *path, struct settings *s, char *err, size_t errlen);
/* NULL-terminated list of the global keys. */
const char *const *settings_known_keys(void);
/* ---- platform.c ---- */
enum host_os { HOST_OTHER, HOST_LINUX, HOST_MACOS, HOST_WINDOWS };
struct host_platform {
	enum host_os os;
	bool amd64;       /* an x86_64 kernel */
	bool windows_pro; /* a Windows edition with Hyper-V (not Home) */
};
/* What this host is: the one place the platform is looked at. */
void host_platform_detect(struct host_platform *p);
/* Make host_platform_detect() say *p from now on (tests); NULL: the host again. */
void host_platform_override(const struct host_platform *p);
/* The seed's default driver of a platform: Linux amd64 -> qemu, other
 * Linux -> lxd, macOS -> qemu, Windows Pro -> hyperv, Windows Home ->
 * virtualbox (anything else: qemu). */
const char *driver_default_for(const struct host_platform *p);
/* The default of local.driver: driver_default_for() this host. */
const char *settings_default_driver(void);
/* A driver (or scope) name: what vmctl-NAME-helper can be called. Which
 * drivers exist is up to the helpers installed; vmctld finds them. */
#define DRIVER_NAME_MAX 31
#define DRIVER_NAME_RULE \
	"a driver name starts with a letter and has only letters, digits, '-' and '_' (at most 31)"
/* Is name a driver name in canonical form (lower case, no alias)? */
bool driver_name_valid(const char *name);
/* The canonical form of a driver name into buf: the seed's aliases
 * ("hyper-v" -> "hyperv", "vbox" -> "virtualbox") resolved, letter case
 * ignored. 0, or PROTO_E_INVALID_ARGUMENT when name breaks DRIVER_NAME_RULE. */
int driver_canonical(const char *name, char *buf, size_t len);
/* The i-th alias of a canonical driver name (i from 0; NULL past the last):
 * "vbox" for virtualbox, whose helper may be called vmctl-vbox-helper. */
const char *driver_alias(const char *driver, size_t i);

/* ---- registry.c ---- */

struct mount_record {
	char *source; /* host path */
	char *target; /* guest path */
	char *uid_map; /* "H:G,H:G" */
	char *gid_map;
};

/* An extra NIC: a host network (bridge) the instance is attached to. */
struct network_record {
	char *name; /* host interface */
	char *mode; /* "auto" (the guest configures it by DHCP) or "manual" */
	char *mac;  /* "52:54:00:xx:xx:xx" */
};

/* One instance as the broker records it (scopes/<scope>/instances.yaml).
 * Strings are heap-allocated (NULL = unset); set them with record_set(). */
struct instance_record {
	char *name;
	enum proto_state state;        /* last known state; written by its name */
	/* The state just before the driver was switched away, restored on
	 * return; meaningful only while has_switch_state. */
	enum proto_state switch_state;
	bool has_switch_state;
	char *image;        /* what the user asked for: "file:///x.qcow2", "24.04" */
	char *image_disk;   /* absolute path of the base disk */
	char *image_format; /* "qcow2" or "raw" */
	char *image_kernel; /* optional direct-boot kernel */
	char *image_initrd;
	char *image_cmdline;
	char *image_sha256;
	char *mac;
	char *created; /* ISO 8601 UTC */
	uint32_t cpus;
	uint64_t memory;
	uint64_t disk;
	bool deleted; /* soft-deleted; recover undoes */
	struct mount_record *mounts; /* native: the driver shares them */
	size_t n_mounts;
	/* classic: the broker serves them over SSH (sshfs in the guest); the
	 * helper never sees them */
	struct mount_record *classic_mounts;
	size_t n_classic_mounts;
	struct network_record *networks; /* extra NICs, beside the default one */
	size_t n_networks;
};

struct registry {
	struct instance_record *v;
	size_t n, cap;
	/* Left by a failed load: the file is not what we hold, and
	 * registry_save() refuses to write over it (PROTO_E_INVALID_STATE). */
	bool refused;
};

/* Missing file: empty registry, 0. A record missing a required field or
 * holding a value the broker could not use fails the whole load. */
int registry_load(const char *path, struct registry *r);
int registry_save(const char *path, const struct registry *r);
struct instance_record *registry_find(struct registry *r, const char *name);
/* Append a zeroed record with that name (copied); NULL on ENOMEM. The
 * pointer is valid until the next add/remove. */
struct instance_record *registry_add(struct registry *r, const char *name);
int registry_remove(struct registry *r, const char *name);
void registry_free(struct registry *r);
/* Replace *field with a copy of value (NULL clears). 0 or PROTO_E_NOMEM. */
int record_set(char **field, const char *value);
void record_free(struct instance_record *rec);
/* Free n network records and the array itself. */
void network_records_free(struct network_record *v, size_t n);
/* registry_load() that also says what is wrong with a bad file:
 * "FILE: line L, column C: what". (registry_load logs that sentence.) */
int registry_load_err(const char *path, struct registry *r, char *err, size_t errlen);

/* ---- paths.c ---- */

/* $VMCTL_DATA (made absolute against the working folder), else
 * $XDG_DATA_HOME/vmctl, else $HOME/.local/share/vmctl (each only when
 * absolute; else the user's home from the password database). */
int data_dir(char *buf, size_t len);
/* path as an absolute path: kept if it is one, else joined to the working
 * folder (a leading "./" dropped). */
int path_absolute(const char *path, char *buf, size_t len);
/* May the effective user trust path (what: "the data folder", for the
 * message)? It must be of type (S_IFDIR, S_IFREG, S_IFSOCK; only a folder
 * may be reached through a symbolic link), owned by that user or root and,
 * unless a socket, not writable by group or others. 0; PROTO_E_NOT_FOUND
 * when it does not exist; else a negative code with err saying why. */
int path_check_trusted(const char *path, mode_t type, const char *what, char *err, size_t errlen);
/* open(path, flags, 0600) that refuses a symbolic link (O_NOFOLLOW) and
 * anything path_check_trusted() would refuse for a regular file. The fd
 * (O_CLOEXEC), or a negative code with err saying why. */
int open_private_file(const char *path, int flags, const char *what, char *err, size_t errlen);
/* Folder of the running executable (from /proc/self/exe). */
int exe_dir(char *buf, size_t len);

/* ---- log.c ---- */

enum log_level { LOG_DEBUG_, LOG_INFO_, LOG_WARN_, LOG_ERROR_ };
/* "2026-11-27T10:00:00Z vmctld INFO: text" on stderr, at most 4 KiB (a
 * longer text ends with " [cut]"). */
void vlog(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void vlog_set_name(const char *name);

/* Seconds a run of repeated records may go uncounted. */
#define LOG_REPEAT_REPORT_S 10
/*
 * On: a record equal to the one before but for its time is not written,
 * only counted; "… the last line repeated N times" is written before the
 * next different record, once LOG_REPEAT_REPORT_S have passed in a run of
 * repeats, and by vlog_flush(). The broker turns it on; off by default.
 */
void vlog_collapse_repeats(bool on);
/* Write the count of repeats not written yet (before exiting). */
void vlog_flush(void);
/* stderr is the file path, open for appending. Once it holds max_bytes it
 * is renamed path.1 (replacing the one before) and a new path is opened on
 * stderr and stdout. max_bytes 0: never. */
void vlog_set_file(const char *path, size_t max_bytes);

/*
 * At most burst events in each window of interval_s seconds, as journald's
 * RateLimitIntervalSec/RateLimitBurst; for text forwarded from elsewhere.
 * Pure: the caller passes the time. Zero-initialise, then set interval_s
 * and burst.
 */
struct log_ratelimit {
	double interval_s;
	unsigned burst;
	double window_start;
	unsigned in_window;
	unsigned long suppressed; /* refused since the last log_ratelimit_take() */
};
/* true: let this one through. A window opens at the first event after the
 * last one ended. */
bool log_ratelimit_allow(struct log_ratelimit *rl, double now);
/* The count of events refused since the last call; it starts again at 0. */
unsigned long log_ratelimit_take(struct log_ratelimit *rl);
/* When the current window ends (the time to report what it refused). */
double log_ratelimit_window_end(const struct log_ratelimit *rl);

#endif
