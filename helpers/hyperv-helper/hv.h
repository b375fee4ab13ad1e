/*
 * vmctl-hyperv-helper: the hyperv driver, on Windows PowerShell's Hyper-V
 * cmdlets. Every call is one `powershell -NoProfile -NonInteractive
 * -Command SCRIPT`, the script made of fixed cmdlet text and values quoted
 * by hv_ps_quote() alone, its output piped through ConvertTo-Json and
 * parsed with jansson (ps.c). What depends on the host's OS (finding
 * PowerShell, paths, starting processes) is in os.c only.
 */
#ifndef HV_H
#define HV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <vmproto/vmh.h>

#define HV_PATH 4096
#define HV_ERR 1024
#define HV_JSON "|ConvertTo-Json -Depth 4 -Compress"
/* The default NIC's switch, and the setting that changes it. */
#define HV_SWITCH_DEFAULT "Default Switch"
/* Files the helper keeps in an instance folder, beside the broker's. */
#define HV_FILE_DISK "disk.vhdx"

/* ---- os.c: what depends on the host's OS ---- */

/* Whether the helper runs on Windows. */
bool hv_os_is_windows(void);
/* PROG found in PATH (with .exe tried on Windows): its path into buf. */
bool hv_os_which(const char *prog, char *buf, size_t len);
/* DIR + separator + FILE into buf; 0 or PROTO_E_INVALID_ARGUMENT. */
int hv_os_path_join(const char *dir, const char *file, char *buf, size_t len);
/* Start argv without blocking the loop (vmh_run). */
int hv_os_spawn(char *const argv[], const struct vmh_run_opts *opts, vmh_run_cb cb, void *ud);

/* ---- ps.c: scripts and their answers ---- */

/* A growing script; a failed allocation is remembered and reported once. */
struct hv_buf {
	char *s;
	size_t len, cap;
	bool oom;
};
void hv_buf_raw(struct hv_buf *b, const char *text);
void hv_buf_fmt(struct hv_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* value as one single-quoted PowerShell literal (hv_ps_quote). */
void hv_buf_q(struct hv_buf *b, const char *value);
/* The text (the caller frees it), or NULL when an allocation failed. */
char *hv_buf_take(struct hv_buf *b);
void hv_buf_free(struct hv_buf *b);

/* value as a single-quoted PowerShell literal: '...' with every quote
 * character PowerShell ends a literal with (' and U+2018, U+2019, U+201A,
 * U+201B) doubled; nothing else is special inside. NULL on no memory. */
char *hv_ps_quote(const char *value);
/* The whole script: error preference, UTF-8 output, body, and a catch that
 * prints the error record as JSON (Message, FullyQualifiedErrorId,
 * CategoryInfo, Category) and exits 1. NULL on no memory. */
char *hv_ps_wrap(const char *body);
/* argv of one call: {ps, -NoProfile, -NonInteractive, -Command, script, NULL}. */
void hv_ps_argv(const char *ps, const char *script, char *argv[6]);

struct hv_pserr {
	char message[HV_ERR];
	char fqid[256];
	char category_info[512];
	char category[64];
};
/* Parse one call's output. 0: *rows is a JSON array (a single object is
 * made an array of one; no output is an empty array), or a PROTO_E_* code
 * with e filled: the error record's, or a sentence when the output is not
 * JSON. status is the exit status (-1: killed). */
int hv_ps_parse(const char *output, int status, json_t **rows, struct hv_pserr *e);
/* The PROTO_E_* code an error record stands for. */
int hv_ps_error_code(const struct hv_pserr *e);

/* A Get-VM State (the enum's number, or its name) as a vmctl state. */
enum proto_state hv_vm_state(const json_t *state);
/* The first IPv4 address of a row's IPAddresses into buf ("" if none). */
void hv_first_ipv4(const json_t *row, char *buf, size_t len);
/* 52:54:00:12:34:56 as Hyper-V writes it: 525400123456. */
void hv_mac_plain(const char *mac, char out[13]);

/* Why Hyper-V cannot be used, from the probe's answer (NULL: it can). */
const char *hv_probe_verdict(const char *output, int status, char *why, size_t whylen);
/* The probe's script. */
char *hv_script_probe(void);

/* ---- scripts.c: one builder per operation (the caller frees) ---- */

char *hv_script_vms(void);
char *hv_script_vm(const char *name);
char *hv_script_switches(void);
struct hv_create {
	const struct vmh_instance *inst;
	const char *base_vhdx; /* the converted image */
	const char *disk;      /* DIR/disk.vhdx */
	const char *sw;        /* the default NIC's switch */
};
char *hv_script_create(const struct hv_create *c);
char *hv_script_start(const char *name);
char *hv_script_stop(const char *name, bool turn_off);
char *hv_script_save(const char *name);
char *hv_script_delete(const char *name, const char *const *shares, size_t n_shares);
char *hv_script_set(const char *name, const char *key, uint64_t value, const char *disk);
char *hv_script_network_add(const char *name, size_t index, const struct vmh_network *net);
char *hv_script_share_add(const char *share, const char *path);
char *hv_script_share_remove(const char *share);
char *hv_script_snapshot_create(const char *name, const char *snap, const char *comment);
char *hv_script_snapshots(const char *name);
char *hv_script_snapshot_restore(const char *name, const char *snap);
char *hv_script_snapshot_delete(const char *name, const char *snap);
char *hv_script_export(const char *name, const char *path);
char *hv_script_import(const char *src, const char *export_dir, const char *clone,
		       const char *clone_dir);
/* The SMB share name of a mount: vmctl-NAME-HASH of the source. */
void hv_share_name(const char *instance, const char *source, char *buf, size_t len);

/* ---- image.c: the image as VHDX, once per sha256 ---- */

/* cb(ud, 0, path) or cb(ud, code, message); progress goes to req. */
typedef void (*hv_image_cb)(void *ud, int rc, const char *text);
int hv_image_ensure(struct vmh_req *req, const char *image, const char *format,
		    hv_image_cb cb, void *ud);
/* The qemu-img convert argv (for tests). */
void hv_image_convert_argv(const char *src, const char *fmt, const char *dst, char *argv[12]);
/* The fraction of qemu-img -p's last "(NN.NN/100%)" in text, or -1. */
double hv_image_progress(const char *text);

/* ---- ops.c ---- */
int hv_init(const char *scope_dir, const msgpack_object *settings, char *why, size_t whylen);
void hv_instances_list(struct vmh_req *req, const msgpack_object *params);
void hv_networks_list(struct vmh_req *req, const msgpack_object *params);
void hv_instance_create(struct vmh_req *req, const msgpack_object *params);
void hv_instance_start(struct vmh_req *req, const msgpack_object *params);
void hv_instance_stop(struct vmh_req *req, const msgpack_object *params);
void hv_instance_suspend(struct vmh_req *req, const msgpack_object *params);
void hv_instance_restart(struct vmh_req *req, const msgpack_object *params);
void hv_instance_delete(struct vmh_req *req, const msgpack_object *params);
void hv_instance_state(struct vmh_req *req, const msgpack_object *params);
void hv_instance_info(struct vmh_req *req, const msgpack_object *params);
void hv_instance_set(struct vmh_req *req, const msgpack_object *params);
void hv_instance_mount(struct vmh_req *req, const msgpack_object *params);
void hv_instance_umount(struct vmh_req *req, const msgpack_object *params);
void hv_instance_network_add(struct vmh_req *req, const msgpack_object *params);
void hv_snapshot_create(struct vmh_req *req, const msgpack_object *params);
void hv_snapshot_list(struct vmh_req *req, const msgpack_object *params);
void hv_snapshot_restore(struct vmh_req *req, const msgpack_object *params);
void hv_snapshot_delete(struct vmh_req *req, const msgpack_object *params);
void hv_instance_clone(struct vmh_req *req, const msgpack_object *params);
/* The PowerShell to run (the setting, or one found in PATH). */
const char *hv_powershell(void);

#endif
