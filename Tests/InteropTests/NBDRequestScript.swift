// The request-level probe run against both servers: libnbd's Python binding
// (strict mode off, so bad requests reach the server) sends reads, writes,
// zero writes, trims, caches, flushes and block-status queries, good and bad,
// and prints each outcome: data digests, extents per context, error names.
// The two servers' printouts must be equal.

enum NBDRequestScript {
    static let source = #"""
import errno, hashlib, sys
import nbd

uri = sys.argv[1]
h = nbd.NBD()
h.set_strict_mode(0)
h.add_meta_context("base:allocation")
h.add_meta_context("qemu:allocation-depth")
h.connect_uri(uri)
size = h.get_size()
print("size", size, "ro", h.is_read_only(), "fast-zero", h.can_fast_zero(), "trim", h.can_trim(),
      "zero", h.can_zero(), "cache", h.can_cache(), "df", h.can_df(), "multi", h.can_multi_conn(),
      "depth", h.can_meta_context("qemu:allocation-depth"))

def attempt(label, call):
    try:
        result = call()
        if isinstance(result, (bytes, bytearray)):
            result = hashlib.sha256(result).hexdigest()[:16]
        print(label, "ok", "" if result is None else result)
    except nbd.Error as e:
        print(label, "error", errno.errorcode.get(e.errno, e.errno))

def status(offset, length, flags=0):
    seen = []
    def callback(context, start, entries, err):
        seen.append((context, start, list(entries)))
        return 0
    h.block_status(length, offset, callback, flags=flags)
    return sorted(seen)

def show(label):
    attempt(label + " map", lambda: status(0, size))
    attempt(label + " map 2M+3", lambda: status(2 * 1024 * 1024 + 3, 3 * 1024 * 1024 + 5))
    attempt(label + " req-one", lambda: status(0, size, nbd.CMD_FLAG_REQ_ONE))
    attempt(label + " data", lambda: h.pread(size, 0) if size <= 64 * 1024 * 1024 else None)

show("start")
attempt("read unaligned", lambda: h.pread(1000, 524287))
attempt("read 1 byte", lambda: h.pread(1, 1024 * 1024 - 1))
attempt("read df", lambda: h.pread(3 * 1024 * 1024, 0, nbd.CMD_FLAG_DF))
attempt("read fua", lambda: h.pread(4096, 4096, nbd.CMD_FLAG_FUA))
attempt("read zero length", lambda: h.pread(0, 4096))
attempt("write unaligned fua", lambda: h.pwrite(b"\x5a" * 10000, 777777, nbd.CMD_FLAG_FUA))
attempt("write aligned", lambda: h.pwrite(b"\x11" * 65536, 6 * 1024 * 1024))
attempt("write empty", lambda: h.pwrite(b"", 4096))
show("after writes")
attempt("zero no-hole", lambda: h.zero(65536, 65536, nbd.CMD_FLAG_NO_HOLE))
attempt("zero may-trim", lambda: h.zero(131072, 6 * 1024 * 1024))
attempt("zero unaligned", lambda: h.zero(1000, 524000))
attempt("fast zero", lambda: h.zero(65536, 3 * 1024 * 1024, nbd.CMD_FLAG_FAST_ZERO))
attempt("fast zero fua", lambda: h.zero(65536, 7 * 1024 * 1024, nbd.CMD_FLAG_FAST_ZERO | nbd.CMD_FLAG_FUA))
show("after zeroes")
attempt("trim", lambda: h.trim(1024 * 1024, 0))
attempt("trim fua", lambda: h.trim(65536, 5 * 1024 * 1024, nbd.CMD_FLAG_FUA))
show("after trims")
# CACHE copies backing data up into the top image, a run the top does not
# decide at a time, as data unless the whole run reads as zeroes. On a
# read-only export both answer EPERM where data would be copied; qemu-nbd
# 7.2 also zeroes the zero runs in its in-memory metadata (block status then
# shows them in the top; at exit it fails to write that back), which qcowkit
# does not, so block status is not compared after those (ImageExportBackend.cache).
attempt("cache", lambda: h.cache(1024 * 1024, 0))
attempt("cache unaligned", lambda: h.cache(5000, 2 * 1024 * 1024 - 1000))
attempt("cache beyond data", lambda: h.cache(65536, 9 * 1024 * 1024))
attempt("cache all", lambda: h.cache(min(size, 32 * 1024 * 1024), 0))
if not h.is_read_only():
    show("after caches")
attempt("flush", lambda: h.flush())
for label, call in [
    ("read past end", lambda: h.pread(4096, size - 1024)),
    ("read offset past end", lambda: h.pread(1, size + 4096)),
    ("read over 32M", lambda: h.pread(32 * 1024 * 1024 + 1, 0)),
    ("read bad flag", lambda: h.pread(512, 0, nbd.CMD_FLAG_NO_HOLE)),
    ("write past end", lambda: h.pwrite(b"x" * 4096, size - 1024)),
    ("write bad flag", lambda: h.pwrite(b"x" * 512, 0, nbd.CMD_FLAG_NO_HOLE)),
    ("zero past end", lambda: h.zero(4096, size - 1024)),
    ("zero bad flag", lambda: h.zero(4096, 0, nbd.CMD_FLAG_DF)),
    ("trim past end", lambda: h.trim(4096, size)),
    ("trim bad flag", lambda: h.trim(4096, 0, nbd.CMD_FLAG_NO_HOLE)),
    ("cache past end", lambda: h.cache(4096, size - 1)),
    ("status past end", lambda: status(size - 512, 4096)),
    ("status zero length", lambda: status(0, 0)),
    ("status bad flag", lambda: status(0, 4096, nbd.CMD_FLAG_FUA | nbd.CMD_FLAG_NO_HOLE)),
    ("flush bad flag", lambda: h.flush(nbd.CMD_FLAG_NO_HOLE)),
]:
    attempt(label, call)
if not h.is_read_only():
    show("end")
plain = nbd.NBD()
plain.set_strict_mode(0)
plain.connect_uri(uri)
def plain_status():
    plain.block_status(4096, 0, lambda *a: 0)
attempt("status without contexts", plain_status)
plain.set_strict_mode(0)
try:
    h.pwrite(b"q" * (32 * 1024 * 1024 + 512), 0)
    print("write over 32M accepted")
except nbd.Error:
    print("write over 32M refused")  # which error the client sees depends on timing
attempt("other connection still served", lambda: plain.pread(4096, 0))
"""#
}
