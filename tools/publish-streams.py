#!/usr/bin/env python3
"""Publish locally built images as a simplestreams v1 tree, in the layout
Ubuntu's cloud-image mirrors use, so vmctl can launch them by alias from a
plain HTTP server (`vmctl set local.image.mirror=http://HOST:PORT/`).

    publish-streams.py --out ROOT [options] IMAGE_DIR [NAME[=ALIAS,ALIAS...] ...]

IMAGE_DIR holds NAME.qcow2 (or NAME.img) disks, as tools/build-image.sh
writes them, each optionally with NAME.vmlinuz, NAME.initrd and NAME.cmdline
for direct kernel boot. Without NAME arguments every disk in IMAGE_DIR is
published. Each product gets the alias NAME plus the ones given after "=".

The tree is written under ROOT/REMOTE_DIR (default "releases", the path of
vmctl's `release` remote on a mirror):

    streams/v1/index.json                              format index:1.0
    streams/v1/org.vmctl.test:released:download.json   format products:1.0
    server/releases/NAME/release-SERIAL/...            the files

Publishing again adds a version (the serial) to the products already there.
"""
import argparse
import email.utils
import hashlib
import json
import os
import shutil
import sys
import time

CONTENT_ID = "org.vmctl.test:released:download"


def die(msg):
    print(f"publish-streams: {msg}", file=sys.stderr)
    sys.exit(1)


def digests(path):
    sha, md5 = hashlib.sha256(), hashlib.md5()
    with open(path, "rb") as f:
        while True:
            block = f.read(1 << 20)
            if not block:
                break
            sha.update(block)
            md5.update(block)
    return sha.hexdigest(), md5.hexdigest()


def place(src, dst):
    """Hard-link src at dst (same file system), else copy it."""
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if os.path.exists(dst):
        os.unlink(dst)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def write_json(path, doc):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.write("\n")
    os.rename(tmp, path)


def item(root, relpath, src, ftype):
    place(src, os.path.join(root, relpath))
    sha, md5 = digests(src)
    return {"ftype": ftype, "path": relpath, "sha256": sha, "md5": md5,
            "size": os.path.getsize(src)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="mirror root served over HTTP")
    ap.add_argument("--remote-dir", default="releases", help="folder of the remote under ROOT")
    ap.add_argument("--serial", default=time.strftime("%Y%m%d", time.gmtime()),
                    help="version key, e.g. 20261127 or 20261127.1")
    ap.add_argument("--arch", default="amd64")
    ap.add_argument("--os", default="debian")
    ap.add_argument("--release-title", default="12 test image {name}",
                    help="shown after the os name; {name} is replaced")
    ap.add_argument("image_dir")
    ap.add_argument("names", nargs="*", help="NAME or NAME=ALIAS,ALIAS")
    args = ap.parse_args()

    if not os.path.isdir(args.image_dir):
        die(f"{args.image_dir} is not a folder")
    wanted = {}
    if args.names:
        for spec in args.names:
            name, _, extra = spec.partition("=")
            wanted[name] = [a for a in extra.split(",") if a]
    else:
        for f in sorted(os.listdir(args.image_dir)):
            stem, ext = os.path.splitext(f)
            if ext in (".qcow2", ".img"):
                wanted[stem] = []
    if not wanted:
        die(f"no NAME.qcow2 or NAME.img in {args.image_dir}")

    root = os.path.join(args.out, args.remote_dir)
    products_rel = f"streams/v1/{CONTENT_ID}.json"
    products_path = os.path.join(root, products_rel)
    now = email.utils.formatdate(usegmt=True)
    try:
        with open(products_path) as f:
            doc = json.load(f)
    except FileNotFoundError:
        doc = {"content_id": CONTENT_ID, "datatype": "image-downloads",
               "format": "products:1.0", "products": {}}
    doc["updated"] = now

    for name, extra in wanted.items():
        disk = None
        for ext in (".qcow2", ".img"):
            p = os.path.join(args.image_dir, name + ext)
            if os.path.isfile(p):
                disk = p
                break
        if not disk:
            die(f"no {name}.qcow2 or {name}.img in {args.image_dir}")
        base = f"server/releases/{name}/release-{args.serial}"
        stem = f"vmctl-{name}-{args.arch}"
        items = {"disk1.img": item(root, f"{base}/{stem}.img", disk, "disk1.img")}
        kernel = os.path.join(args.image_dir, name + ".vmlinuz")
        initrd = os.path.join(args.image_dir, name + ".initrd")
        cmdline = os.path.join(args.image_dir, name + ".cmdline")
        if os.path.isfile(kernel):
            items["vmlinuz"] = item(root, f"{base}/unpacked/{stem}-vmlinuz", kernel, "vmlinuz")
            if os.path.isfile(cmdline):
                with open(cmdline) as f:
                    items["vmlinuz"]["kernel_cmdline"] = f.read().strip()
            if os.path.isfile(initrd):
                items["initrd"] = item(root, f"{base}/unpacked/{stem}-initrd", initrd, "initrd")
        aliases = [name] + [a for a in extra if a != name]
        product_id = f"org.vmctl.test:{name}:{args.arch}"
        product = doc["products"].setdefault(product_id, {"versions": {}})
        product.update({
            "aliases": ",".join(aliases),
            "arch": args.arch,
            "os": args.os,
            "release": name,
            "release_codename": name,
            "release_title": args.release_title.format(name=name),
            "supported": True,
            "version": name,
        })
        product["versions"][args.serial] = {
            "items": items,
            "label": "release",
            "pubname": f"vmctl-{name}-{args.arch}-{args.serial}",
        }
        print(f"publish-streams: {name} ({','.join(aliases)}) version {args.serial}", file=sys.stderr)

    write_json(products_path, doc)
    index = {
        "format": "index:1.0",
        "updated": now,
        "index": {
            CONTENT_ID: {
                "datatype": "image-downloads",
                "format": "products:1.0",
                "path": products_rel,
                "products": sorted(doc["products"]),
                "updated": now,
            }
        },
    }
    write_json(os.path.join(root, "streams/v1/index.json"), index)
    return 0


if __name__ == "__main__":
    sys.exit(main())
