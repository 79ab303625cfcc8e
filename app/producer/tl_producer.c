/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libtapline-producer: the framed-mode producer (see tl_producer.h for the design).
 *
 * Frames live in one of three places, always in sequence order:
 *   - the memory ring: sealed frames, oldest first, with holes where a frame was resolved
 *     out of order (the head only moves past resolved frames);
 *   - the spill: segment files, sorted by their first sequence;
 *   - the open frame: raw NDJSON not yet sealed.
 * Invariant: every frame that is only on disk (disk_only) is newer than every frame in the
 * ring, so replay order is "ring, then segments in order", and a frame may go straight to
 * the ring only while disk_only == 0. Frames read back from disk stay in their segment
 * (pf->seg) until resolved; a segment is deleted once all its records are resolved.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/queue.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "tl_frame.h"
#include "tl_producer.h"

#define STATE_FILE "state"
#define STATE_TMP "state.tmp"
#define LOCK_FILE "lock"
#define STATE_MAGIC UINT32_C(0x544c5053) /* "TLPS" */
#define STATE_VERSION 1
#define STATE_LEN 32                   /* magic, version, producer id, reserved, crc32c, pad */
#define SEG_MAGIC UINT32_C(0x544c5331) /* "TLS1" */
#define SEG_VERSION 1
#define SEG_HDR_LEN 16 /* magic, version, producer id */
#define REC_HDR_LEN 16 /* len, crc32c, sealed_ms */
#define SEG_NAME_LEN 32
#define ACK_BUF 256              /* larger than any ACK: a bigger datagram is not an ACK */
#define ACKS_PER_ROUND 4096      /* bound the work of one poll round */
#define SEND_RETRY_NS 1000000ull /* socket buffer full: try again in 1 ms */
#define NS_PER_MS 1000000ull
#define NEVER UINT64_MAX

enum fstate {
	F_RESOLVED = 0, /* answered (or an empty slot) */
	F_QUEUED,       /* sealed, never sent in this process */
	F_SENT,         /* sent, waiting for an ACK until deadline */
	F_WAIT,         /* retry-later: resend at deadline */
};

struct segment {
	TAILQ_ENTRY(segment) link;
	uint64_t first_seq;       /* the file name */
	uint64_t first_ms;        /* sealed time of its first record */
	uint64_t size;            /* bytes in the file */
	uint64_t read_off;        /* next record to read back */
	uint64_t unloaded_events; /* events in records not yet read back */
	uint32_t records;         /* valid records */
	uint32_t loaded;          /* records held in the ring (read back or spilled from it) */
	uint32_t resolved;        /* of those, resolved */
	int fd;                   /* append fd (writing) or read fd (replaying), else -1 */
	bool writing;             /* the segment new frames are appended to */
	bool dirty;               /* appended since the last fsync */
	bool new_file;            /* its directory entry is not fsync'ed yet */
};

TAILQ_HEAD(seg_list, segment);

struct pframe {
	uint8_t *buf;        /* slot_cap bytes, fixed per slot */
	struct segment *seg; /* holds a copy on disk, or NULL (memory only) */
	uint64_t seq;
	uint64_t deadline_ns;
	uint64_t sealed_ms;
	uint32_t len;
	uint32_t count;
	uint32_t backoff_ms;
	uint8_t state;
};

struct tl_producer {
	struct tl_producer_conf c; /* with defaults; host, spill_dir, key not kept */
	uint8_t key[TL_FRAME_KEY_MAX];
	size_t key_len;
	int fd;
	int dirfd;
	int lockfd;
	uint64_t id;
	uint64_t next_seq;
	uint64_t reserved; /* highest sequence durably reserved */
	uint64_t rng;

	uint8_t *open_buf; /* frame_bytes */
	uint32_t open_len;
	uint32_t open_count;
	uint64_t open_since_ns;

	struct pframe *ring;
	uint8_t *slab;
	uint8_t *scratch; /* slot_cap: frames sealed straight to disk */
	uint32_t slot_cap;
	uint32_t cap;
	uint32_t head;
	uint32_t n; /* slots used, resolved holes included */
	uint32_t unresolved;
	uint32_t mem_only; /* unresolved frames with no copy on disk */
	uint32_t inflight; /* F_SENT + F_WAIT */

	struct seg_list segs;
	struct segment *wseg;
	uint64_t disk_only;
	uint64_t spill_bytes;
	uint32_t nsegs;
	uint64_t sync_due_ns;

	uint64_t last_progress_ns;
	uint64_t send_retry_ns;
	bool stalled;
	int resolved_now; /* frames resolved during the current poll */

	struct tl_producer_stats st;
	uint32_t crc_table[256];
};

/* ---- small helpers ---- */

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t
wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000ull + (uint64_t)ts.tv_nsec / 1000000ull;
}

static void
put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void
put_be64(uint8_t *p, uint64_t v)
{
	put_be32(p, (uint32_t)(v >> 32));
	put_be32(p + 4, (uint32_t)v);
}

static uint32_t
get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t
get_be64(const uint8_t *p)
{
	return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
}

/* CRC32C (Castagnoli), reflected, table per producer: no global state to initialise. */
static void
crc32c_init(uint32_t *t)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
		t[i] = c;
	}
}

static uint32_t
crc32c(const uint32_t *t, uint32_t crc, const uint8_t *p, size_t n)
{
	crc = ~crc;
	while (n--)
		crc = t[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

static uint64_t
rng_next(struct tl_producer *p)
{
	/* xorshift64*: jitter only, not security. */
	p->rng ^= p->rng >> 12;
	p->rng ^= p->rng << 25;
	p->rng ^= p->rng >> 27;
	return p->rng * 0x2545f4914f6cdd1dull;
}

/* @p ms +- jitter_pct percent, in ns, at least 1 ms. */
static uint64_t
jittered_ns(struct tl_producer *p, uint32_t ms)
{
	uint64_t base = (uint64_t)ms * NS_PER_MS;
	uint64_t j = base * p->c.jitter_pct / 100;
	uint64_t v = base - j;

	if (j > 0)
		v += rng_next(p) % (2 * j + 1);
	return v < NS_PER_MS ? NS_PER_MS : v;
}

static int
write_full(int fd, const void *buf, size_t n)
{
	const uint8_t *b = buf;

	while (n > 0) {
		ssize_t r = write(fd, b, n);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -EIO;
		b += r;
		n -= (size_t)r;
	}
	return 0;
}

/* @return bytes read (short at end of file) or -errno. */
static ssize_t
pread_full(int fd, void *buf, size_t n, uint64_t off)
{
	uint8_t *b = buf;
	size_t got = 0;

	while (got < n) {
		ssize_t r = pread(fd, b + got, n - got, (off_t)(off + got));

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

/* ---- state file: producer id and reserved sequences ---- */

/* @return 0 and the fields; 1 if there is no state file; -EBADMSG; -errno. */
static int
state_read(struct tl_producer *p, uint64_t *id, uint64_t *reserved)
{
	uint8_t b[STATE_LEN + 1];
	ssize_t r;
	int fd = openat(p->dirfd, STATE_FILE, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return errno == ENOENT ? 1 : -errno;
	r = pread_full(fd, b, sizeof(b), 0);
	close(fd);
	if (r < 0)
		return (int)r;
	if (r != STATE_LEN || get_be32(b) != STATE_MAGIC || get_be32(b + 4) != STATE_VERSION ||
	        get_be32(b + 24) != crc32c(p->crc_table, 0, b, 24) || get_be64(b + 8) == 0)
		return -EBADMSG;
	*id = get_be64(b + 8);
	*reserved = get_be64(b + 16);
	return 0;
}

/* Atomic and durable: a crash leaves either the old or the new state, never a mix. */
static int
state_write(struct tl_producer *p, uint64_t id, uint64_t reserved)
{
	uint8_t b[STATE_LEN] = {0};
	int fd, rc;

	put_be32(b, STATE_MAGIC);
	put_be32(b + 4, STATE_VERSION);
	put_be64(b + 8, id);
	put_be64(b + 16, reserved);
	put_be32(b + 24, crc32c(p->crc_table, 0, b, 24));
	fd = openat(p->dirfd, STATE_TMP, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	rc = write_full(fd, b, sizeof(b));
	if (rc == 0 && fsync(fd) != 0)
		rc = -errno;
	close(fd);
	if (rc == 0 && renameat(p->dirfd, STATE_TMP, p->dirfd, STATE_FILE) != 0)
		rc = -errno;
	if (rc == 0 && fsync(p->dirfd) != 0)
		rc = -errno;
	return rc;
}

/* Reserve the next block before using any of it, so a restart never reuses a number. */
static int
reserve_seq(struct tl_producer *p)
{
	uint64_t upto = p->next_seq + TL_PRODUCER_SEQ_BLOCK - 1;
	int rc = state_write(p, p->id, upto);

	if (rc == 0)
		p->reserved = upto;
	return rc;
}

/* ---- spill segments ---- */

static void
seg_name(char *buf, uint64_t first_seq)
{
	snprintf(buf, SEG_NAME_LEN, "seg-%020" PRIu64 ".tls", first_seq);
}

static bool
seg_parse_name(const char *name, uint64_t *first_seq)
{
	uint64_t v = 0;

	if (strlen(name) != 4 + 20 + 4 || memcmp(name, "seg-", 4) != 0 ||
	        memcmp(name + 24, ".tls", 4) != 0)
		return false;
	for (int i = 4; i < 24; i++) {
		if (name[i] < '0' || name[i] > '9')
			return false;
		if (v > (UINT64_MAX - 9) / 10)
			return false;
		v = v * 10 + (uint64_t)(name[i] - '0');
	}
	*first_seq = v;
	return v != 0;
}

static void
seg_insert(struct tl_producer *p, struct segment *s)
{
	struct segment *it;

	/* New segments are usually the newest: search from the tail. */
	TAILQ_FOREACH_REVERSE(it, &p->segs, seg_list, link)
	{
		if (it->first_seq < s->first_seq) {
			TAILQ_INSERT_AFTER(&p->segs, it, s, link);
			goto added;
		}
	}
	TAILQ_INSERT_HEAD(&p->segs, s, link);
added:
	p->nsegs++;
	p->spill_bytes += s->size;
}

static int
seg_sync(struct tl_producer *p, struct segment *s)
{
	if (s->fd >= 0 && s->dirty) {
		if (fsync(s->fd) != 0) {
			p->st.spill_errors++;
			return -errno;
		}
		s->dirty = false;
	}
	if (s->new_file) {
		/* The file's name must survive a crash too, not only its bytes. */
		if (fsync(p->dirfd) != 0) {
			p->st.spill_errors++;
			return -errno;
		}
		s->new_file = false;
	}
	return 0;
}

static void
seg_forget(struct tl_producer *p, struct segment *s)
{
	char name[SEG_NAME_LEN];

	if (s->fd >= 0)
		close(s->fd);
	seg_name(name, s->first_seq);
	/* No fsync of the directory: a deletion lost in a crash only resends frames the
	 * appliance already has, and it answers those with duplicate. */
	if (unlinkat(p->dirfd, name, 0) != 0 && errno != ENOENT)
		p->st.spill_errors++;
	TAILQ_REMOVE(&p->segs, s, link);
	p->nsegs--;
	p->spill_bytes -= s->size;
	if (p->wseg == s)
		p->wseg = NULL;
	free(s);
}

static void
seg_maybe_delete(struct tl_producer *p, struct segment *s)
{
	if (!s->writing && s->loaded == s->records && s->resolved == s->loaded)
		seg_forget(p, s);
}

/* Stop appending to @p s: fsync it and close its fd. */
static int
seg_finish(struct tl_producer *p, struct segment *s)
{
	int rc = seg_sync(p, s);

	if (rc != 0)
		return rc;
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	s->writing = false;
	if (p->wseg == s)
		p->wseg = NULL;
	return 0;
}

static int
seg_create(struct tl_producer *p, uint64_t first_seq, uint64_t first_ms, struct segment **out)
{
	char name[SEG_NAME_LEN];
	uint8_t hdr[SEG_HDR_LEN];
	struct segment *s;
	int rc;

	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	seg_name(name, first_seq);
	s->fd = openat(p->dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
	if (s->fd < 0) {
		rc = -errno;
		goto fail;
	}
	put_be32(hdr, SEG_MAGIC);
	put_be32(hdr + 4, SEG_VERSION);
	put_be64(hdr + 8, p->id);
	rc = write_full(s->fd, hdr, sizeof(hdr));
	if (rc != 0) {
		close(s->fd);
		unlinkat(p->dirfd, name, 0);
		goto fail;
	}
	s->first_seq = first_seq;
	s->first_ms = first_ms;
	s->size = SEG_HDR_LEN;
	s->read_off = SEG_HDR_LEN;
	s->writing = true;
	s->new_file = true;
	s->dirty = true;
	seg_insert(p, s);
	*out = s;
	return 0;
fail:
	p->st.spill_errors++;
	free(s);
	return rc;
}

static int
seg_append(struct tl_producer *p, struct segment *s, const uint8_t *frame, uint32_t len,
        uint64_t sealed_ms)
{
	uint8_t hdr[REC_HDR_LEN];
	struct iovec iov[2];
	uint32_t crc;
	ssize_t r;
	size_t want = REC_HDR_LEN + (size_t)len;

	put_be32(hdr, len);
	put_be64(hdr + 8, sealed_ms);
	crc = crc32c(p->crc_table, 0, hdr, 4);
	crc = crc32c(p->crc_table, crc, hdr + 8, 8);
	crc = crc32c(p->crc_table, crc, frame, len);
	put_be32(hdr + 4, crc);
	iov[0].iov_base = hdr;
	iov[0].iov_len = sizeof(hdr);
	iov[1].iov_base = (void *)(uintptr_t)frame;
	iov[1].iov_len = len;
	do {
		r = writev(s->fd, iov, 2);
	} while (r < 0 && errno == EINTR);
	if (r != (ssize_t)want) {
		int rc = r < 0 ? -errno : -ENOSPC;

		/* Leave no partial record behind: the reader would take it for a torn tail
		 * and skip what is appended after it. */
		if (ftruncate(s->fd, (off_t)s->size) != 0)
			s->writing = false;
		p->st.spill_errors++;
		return rc;
	}
	s->size += want;
	s->records++;
	s->dirty = true;
	p->spill_bytes += want;
	p->st.frames_spilled++;
	return 0;
}

/* Would one more record of @p len bytes (in a new segment if @p new_seg) fit the limit? */
static bool
spill_room(const struct tl_producer *p, uint32_t len, bool new_seg)
{
	uint64_t need = REC_HDR_LEN + (uint64_t)len + (new_seg ? SEG_HDR_LEN : 0);

	return p->spill_bytes + need <= p->c.spill_max_bytes;
}

/* A sealed frame that goes straight to disk (it is newer than everything in the ring). */
static int
spill_new_frame(struct tl_producer *p, const uint8_t *frame, uint32_t len, uint64_t seq,
        uint32_t count, uint64_t sealed_ms, uint64_t now)
{
	int rc;

	if (p->wseg != NULL && p->wseg->size >= p->c.spill_segment_bytes) {
		rc = seg_finish(p, p->wseg);
		if (rc != 0)
			return rc;
	}
	if (p->wseg == NULL) {
		rc = seg_create(p, seq, sealed_ms, &p->wseg);
		if (rc != 0)
			return rc;
	}
	rc = seg_append(p, p->wseg, frame, len, sealed_ms);
	if (rc != 0) {
		if (p->wseg->records == 0) {
			p->wseg->writing = false;
			seg_forget(p, p->wseg);
		}
		return rc;
	}
	p->wseg->unloaded_events += count;
	p->disk_only++;
	if (p->sync_due_ns == 0)
		p->sync_due_ns = now + (uint64_t)p->c.spill_sync_ms * NS_PER_MS;
	return 0;
}

static struct pframe *
ring_at(struct tl_producer *p, uint32_t k)
{
	return &p->ring[(p->head + k) % p->cap];
}

/*
 * Write the ring's memory-only frames to disk (on a stall, and on close). Each run of
 * consecutive memory-only frames gets its own segment, so that no segment's range of
 * sequences overlaps another's and replay after a restart stays in order.
 */
static int
spill_memory(struct tl_producer *p)
{
	struct segment *run = NULL;
	int rc = 0;

	for (uint32_t k = 0; k < p->n && p->mem_only > 0; k++) {
		struct pframe *pf = ring_at(p, k);

		if (pf->state == F_RESOLVED || pf->seg != NULL) {
			if (run != NULL) {
				rc = seg_finish(p, run);
				seg_maybe_delete(p, run);
				run = NULL;
				if (rc != 0)
					break;
			}
			continue;
		}
		if (!spill_room(p, pf->len, run == NULL)) {
			rc = -ENOSPC;
			break;
		}
		if (run == NULL) {
			rc = seg_create(p, pf->seq, pf->sealed_ms, &run);
			if (rc != 0)
				break;
		}
		rc = seg_append(p, run, pf->buf, pf->len, pf->sealed_ms);
		if (rc != 0)
			break;
		run->loaded++;
		pf->seg = run;
		p->mem_only--;
	}
	if (run != NULL) {
		int rc2 = seg_finish(p, run);

		if (rc == 0)
			rc = rc2;
		if (rc2 != 0) {
			/* Could not fsync: not durable, but the bytes are written; keep the
			 * segment and count the error. */
			close(run->fd);
			run->fd = -1;
			run->writing = false;
		}
		seg_maybe_delete(p, run);
	}
	return rc;
}

/* Read back one segment file's records (headers only; the CRC is checked on replay). */
static int
seg_scan(struct tl_producer *p, const char *name, uint64_t first_seq, uint32_t *max_len,
        uint64_t *max_seq)
{
	uint8_t hdr[REC_HDR_LEN + TL_FRAME_HDR_LEN];
	struct segment *s = NULL;
	struct stat sb;
	uint64_t off = SEG_HDR_LEN, events = 0;
	uint32_t records = 0;
	ssize_t r;
	int fd = openat(p->dirfd, name, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (fstat(fd, &sb) != 0) {
		int rc = -errno;

		close(fd);
		return rc;
	}
	r = pread_full(fd, hdr, SEG_HDR_LEN, 0);
	if (r < 0) {
		close(fd);
		return (int)r;
	}
	if (r == SEG_HDR_LEN && (get_be32(hdr) != SEG_MAGIC || get_be32(hdr + 4) != SEG_VERSION ||
	                                get_be64(hdr + 8) != p->id)) {
		/* Not ours: leave it alone. */
		close(fd);
		p->st.spill_errors++;
		return 0;
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		close(fd);
		return -ENOMEM;
	}
	while (r == SEG_HDR_LEN && off + REC_HDR_LEN + TL_FRAME_HDR_LEN <= (uint64_t)sb.st_size) {
		uint32_t len;

		r = pread_full(fd, hdr, sizeof(hdr), off);
		if (r < 0) {
			close(fd);
			free(s);
			return (int)r;
		}
		if (r != sizeof(hdr))
			break;
		len = get_be32(hdr);
		if (len < TL_FRAME_HDR_LEN || len > TL_FRAME_MAX ||
		        off + REC_HDR_LEN + len > (uint64_t)sb.st_size ||
		        get_be32(hdr + REC_HDR_LEN) != TL_FRAME_MAGIC)
			break;
		if (records == 0)
			s->first_ms = get_be64(hdr + 8);
		records++;
		events += get_be32(hdr + REC_HDR_LEN + 24);
		if (len > *max_len)
			*max_len = len;
		if (get_be64(hdr + REC_HDR_LEN + 16) > *max_seq)
			*max_seq = get_be64(hdr + REC_HDR_LEN + 16);
		off += REC_HDR_LEN + len;
		r = SEG_HDR_LEN;
	}
	close(fd);
	if (off < (uint64_t)sb.st_size)
		p->st.spill_torn++; /* a torn tail: at least one record lost */
	if (records == 0) {
		free(s);
		if (unlinkat(p->dirfd, name, 0) != 0)
			p->st.spill_errors++;
		return 0;
	}
	s->first_seq = first_seq;
	s->size = (uint64_t)sb.st_size;
	s->read_off = SEG_HDR_LEN;
	s->records = records;
	s->unloaded_events = events;
	s->fd = -1;
	seg_insert(p, s);
	p->disk_only += records;
	p->st.events_pending += events;
	return 0;
}

static int
spill_scan(struct tl_producer *p, uint32_t *max_len, uint64_t *max_seq)
{
	struct dirent *de;
	int fd, rc = 0;
	DIR *d;

	fd = openat(p->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (d == NULL) {
		rc = -errno;
		close(fd);
		return rc;
	}
	while ((de = readdir(d)) != NULL) {
		uint64_t first;

		if (!seg_parse_name(de->d_name, &first))
			continue;
		rc = seg_scan(p, de->d_name, first, max_len, max_seq);
		if (rc != 0)
			break;
	}
	closedir(d);
	return rc;
}

/* The segment is damaged from its read position on: give up the rest of it. */
static void
seg_torn(struct tl_producer *p, struct segment *s)
{
	uint64_t lost = s->records - s->loaded;

	p->st.spill_torn += lost;
	p->disk_only -= lost;
	p->st.events_pending -= s->unloaded_events;
	s->unloaded_events = 0;
	s->records = s->loaded;
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	seg_maybe_delete(p, s);
}

/* Move frames from disk into free ring slots, oldest first. */
static int
replay_load(struct tl_producer *p)
{
	while (!p->stalled && p->disk_only > 0 && p->n < p->cap) {
		struct segment *s;
		struct pframe *pf;
		struct tl_frame_view v;
		uint8_t hdr[REC_HDR_LEN];
		uint32_t len, crc;
		ssize_t r;
		int rc;

		TAILQ_FOREACH(s, &p->segs, link)
		{
			if (s->loaded < s->records)
				break;
		}
		if (s == NULL)
			return 0; /* cannot happen: disk_only counts exactly these */
		if (s->writing) {
			/* Replay caught up with the appends: new frames go to a new segment. */
			rc = seg_finish(p, s);
			if (rc != 0)
				return rc;
		}
		if (s->fd < 0) {
			char name[SEG_NAME_LEN];

			seg_name(name, s->first_seq);
			s->fd = openat(p->dirfd, name, O_RDONLY | O_CLOEXEC);
			if (s->fd < 0) {
				p->st.spill_errors++;
				if (errno == ENOENT) {
					seg_torn(p, s);
					continue;
				}
				return -errno;
			}
		}
		pf = ring_at(p, p->n);
		r = pread_full(s->fd, hdr, sizeof(hdr), s->read_off);
		if (r < 0) {
			p->st.spill_errors++;
			return (int)r;
		}
		len = r == sizeof(hdr) ? get_be32(hdr) : 0;
		if (len < TL_FRAME_HDR_LEN || len > p->slot_cap) {
			seg_torn(p, s);
			continue;
		}
		r = pread_full(s->fd, pf->buf, len, s->read_off + REC_HDR_LEN);
		if (r < 0) {
			p->st.spill_errors++;
			return (int)r;
		}
		crc = crc32c(p->crc_table, 0, hdr, 4);
		crc = crc32c(p->crc_table, crc, hdr + 8, 8);
		crc = crc32c(p->crc_table, crc, pf->buf, len);
		if ((size_t)r != len || crc != get_be32(hdr + 4) ||
		        tl_frame_parse(pf->buf, len, &v) != TL_FRAME_OK || v.producer_id != p->id) {
			seg_torn(p, s);
			continue;
		}
		pf->seg = s;
		pf->seq = v.sequence;
		pf->len = len;
		pf->count = v.count;
		pf->sealed_ms = get_be64(hdr + 8);
		pf->state = F_QUEUED;
		pf->backoff_ms = p->c.ack_timeout_ms;
		pf->deadline_ns = 0;
		p->n++;
		p->unresolved++;
		s->loaded++;
		s->read_off += REC_HDR_LEN + len;
		s->unloaded_events -= v.count < s->unloaded_events ? v.count : s->unloaded_events;
		p->disk_only--;
		p->st.frames_replayed++;
		if (s->loaded == s->records) {
			close(s->fd);
			s->fd = -1;
		}
	}
	return 0;
}

/* ---- sending and ACKs ---- */

/* @return 0 (sent, or failed in a way a timeout will retry); -EAGAIN (socket full). */
static int
transmit(struct tl_producer *p, struct pframe *pf)
{
	ssize_t r = send(p->fd, pf->buf, pf->len, MSG_DONTWAIT);

	if (r >= 0)
		return 0;
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS || errno == EINTR)
		return -EAGAIN;
	/* ECONNREFUSED (an ICMP port unreachable for an earlier datagram) and the like: the
	 * ACK timeout resends it, with backoff, until the appliance answers. */
	p->st.send_errors++;
	return 0;
}

static void
run_senders(struct tl_producer *p, uint64_t now)
{
	if (now < p->send_retry_ns)
		return;
	for (uint32_t k = 0; k < p->n; k++) {
		struct pframe *pf = ring_at(p, k);
		bool first = pf->state == F_QUEUED;

		if (pf->state == F_RESOLVED)
			continue;
		if (first && p->inflight >= p->c.window)
			continue;
		if (!first && pf->deadline_ns > now)
			continue;
		if (transmit(p, pf) != 0) {
			p->send_retry_ns = now + SEND_RETRY_NS;
			return;
		}
		if (first) {
			if (p->inflight == 0)
				p->last_progress_ns = now; /* the stall clock starts now */
			p->inflight++;
			p->st.frames_sent++;
			pf->backoff_ms = p->c.ack_timeout_ms;
		} else {
			p->st.frames_resent++;
			if (pf->state == F_SENT) {
				uint64_t b = (uint64_t)pf->backoff_ms * 2;

				pf->backoff_ms =
				        b > p->c.backoff_max_ms ? p->c.backoff_max_ms : (uint32_t)b;
			}
		}
		pf->state = F_SENT;
		pf->deadline_ns = now + jittered_ns(p, pf->backoff_ms);
	}
}

static struct pframe *
find_frame(struct tl_producer *p, uint64_t seq)
{
	uint32_t lo = 0, hi = p->n;

	/* The ring is in sequence order (resolved holes keep their sequence): binary
	 * search. A spill damaged in some way this code did not foresee could break the
	 * order, and a lost ACK match would mean endless resends: fall back to a scan. */
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		struct pframe *pf = ring_at(p, mid);

		if (pf->seq == seq)
			return pf->state != F_RESOLVED ? pf : NULL;
		if (pf->seq < seq)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (uint32_t k = 0; k < p->n; k++) {
		struct pframe *pf = ring_at(p, k);

		if (pf->seq == seq && pf->state != F_RESOLVED)
			return pf;
	}
	return NULL;
}

static void
resolve(struct tl_producer *p, struct pframe *pf, uint64_t now)
{
	if (pf->state == F_SENT || pf->state == F_WAIT)
		p->inflight--;
	pf->state = F_RESOLVED;
	p->unresolved--;
	p->st.events_pending -= pf->count;
	if (pf->seg != NULL) {
		pf->seg->resolved++;
		seg_maybe_delete(p, pf->seg);
		pf->seg = NULL;
	} else {
		p->mem_only--;
	}
	p->last_progress_ns = now;
	p->stalled = false;
	p->resolved_now++;
	while (p->n > 0 && p->ring[p->head].state == F_RESOLVED) {
		p->head = (p->head + 1) % p->cap;
		p->n--;
	}
}

static void
handle_ack(struct tl_producer *p, const uint8_t *buf, size_t len, uint64_t now)
{
	struct pframe *pf;
	struct tl_ack a;
	int rc = tl_ack_parse(buf, len, p->key_len ? p->key : NULL, p->key_len, &a);

	if (rc == -EACCES) {
		p->st.acks_unauthenticated++;
		return;
	}
	if (rc != 0) {
		p->st.acks_invalid++;
		return;
	}
	if (a.producer_id != p->id) {
		p->st.acks_foreign++;
		return;
	}
	pf = find_frame(p, a.sequence);
	if (pf == NULL || pf->state == F_QUEUED) {
		p->st.acks_unknown++;
		return;
	}
	switch (a.status) {
	case TL_ACK_COMMITTED:
	case TL_ACK_DUPLICATE:
		if (a.status == TL_ACK_COMMITTED)
			p->st.frames_acked++;
		else
			p->st.frames_duplicate++;
		p->st.events_acked += pf->count;
		resolve(p, pf, now);
		break;
	case TL_ACK_RETRY_LATER:
		p->st.retry_later++;
		pf->state = F_WAIT;
		/* At least retry_ms; jitter only ever adds, so that senders told to wait do
		 * not all come back at the same instant. */
		pf->deadline_ns =
		        now + (uint64_t)(a.retry_ms ? a.retry_ms : 1) * NS_PER_MS +
		        rng_next(p) %
		                ((uint64_t)a.retry_ms * p->c.jitter_pct / 100 * NS_PER_MS + 1);
		break;
	case TL_ACK_REJECTED: {
		uint64_t seq = pf->seq;
		uint32_t count = pf->count;

		p->st.frames_rejected++;
		p->st.rejected[a.reason]++;
		p->st.events_rejected += count;
		resolve(p, pf, now);
		/* After resolve: the callback may queue events (not poll or close). */
		if (p->c.on_reject != NULL)
			p->c.on_reject(p->c.cb_arg, seq, count, (enum tl_frame_reason)a.reason);
		break;
	}
	default:
		p->st.acks_invalid++; /* tl_ack_parse does not let these through */
		break;
	}
}

static void
read_acks(struct tl_producer *p)
{
	uint8_t buf[ACK_BUF];

	for (int i = 0; i < ACKS_PER_ROUND; i++) {
		ssize_t r = recv(p->fd, buf, sizeof(buf), MSG_DONTWAIT | MSG_TRUNC);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == ECONNREFUSED) {
				/* The ICMP error of an earlier send, reported here. */
				p->st.send_errors++;
				continue;
			}
			return;
		}
		if ((size_t)r > sizeof(buf)) {
			p->st.acks_invalid++;
			continue;
		}
		handle_ack(p, buf, (size_t)r, now_ns());
	}
}

/* ---- sealing ---- */

static int
seal(struct tl_producer *p, uint64_t now)
{
	bool to_mem = !p->stalled && p->disk_only == 0 && p->n < p->cap;
	uint64_t sealed_ms = wall_ms();
	struct pframe *pf = NULL;
	uint8_t *out;
	long len;
	int rc;

	if (p->open_count == 0)
		return 0;
	if (!to_mem && !spill_room(p, p->open_len + TL_PRODUCER_FRAME_OVERHEAD,
	                       p->wseg == NULL || p->wseg->size >= p->c.spill_segment_bytes))
		return -ENOBUFS;
	if (p->next_seq > p->reserved) {
		rc = reserve_seq(p);
		if (rc != 0)
			return rc;
	}
	if (to_mem) {
		pf = ring_at(p, p->n);
		out = pf->buf;
	} else {
		out = p->scratch;
	}
	len = tl_frame_encode(p->id, p->next_seq, p->open_buf, p->open_len, p->open_count,
	        p->c.zstd_level, p->key_len ? p->key : NULL, p->key_len, p->c.key_id, out,
	        p->slot_cap);
	if (len < 0)
		return (int)len;
	if (to_mem) {
		pf->seg = NULL;
		pf->seq = p->next_seq;
		pf->len = (uint32_t)len;
		pf->count = p->open_count;
		pf->sealed_ms = sealed_ms;
		pf->state = F_QUEUED;
		pf->backoff_ms = p->c.ack_timeout_ms;
		pf->deadline_ns = 0;
		p->n++;
		p->unresolved++;
		p->mem_only++;
	} else {
		rc = spill_new_frame(
		        p, out, (uint32_t)len, p->next_seq, p->open_count, sealed_ms, now);
		if (rc != 0)
			return rc;
	}
	p->next_seq++;
	p->st.frames_sealed++;
	p->open_len = 0;
	p->open_count = 0;
	return 0;
}

/* One round of timers: linger, stall, replay, (re)send, fsync. */
static int
run(struct tl_producer *p, uint64_t now)
{
	int rc = 0, r;

	if (p->open_count > 0 && now - p->open_since_ns >= (uint64_t)p->c.linger_ms * NS_PER_MS) {
		r = seal(p, now);
		if (r != 0 && r != -ENOBUFS)
			rc = r;
	}
	if (!p->stalled && p->inflight > 0 && now > p->last_progress_ns &&
	        now - p->last_progress_ns >= (uint64_t)p->c.unreachable_ms * NS_PER_MS) {
		p->stalled = true;
		p->st.stalls++;
	}
	if (p->stalled && p->mem_only > 0) {
		r = spill_memory(p);
		if (r != 0 && r != -ENOSPC && rc == 0)
			rc = r;
	}
	r = replay_load(p);
	if (r != 0 && rc == 0)
		rc = r;
	run_senders(p, now);
	if (p->wseg != NULL && p->sync_due_ns != 0 && now >= p->sync_due_ns) {
		r = seg_sync(p, p->wseg);
		if (r == 0)
			p->sync_due_ns = 0;
		else if (rc == 0)
			rc = r;
	} else if (p->wseg == NULL) {
		p->sync_due_ns = 0;
	}
	return rc;
}

/* ---- public API ---- */

void
tl_producer_conf_init(struct tl_producer_conf *conf)
{
	memset(conf, 0, sizeof(*conf));
	conf->port = TL_PRODUCER_DEFAULT_PORT;
	conf->frame_bytes = 16384;
	conf->linger_ms = 20;
	conf->ack_timeout_ms = 500;
	conf->backoff_max_ms = 10000;
	conf->jitter_pct = 20;
	conf->window = 32;
	conf->mem_frames = 128;
	conf->unreachable_ms = 5000;
	conf->spill_max_bytes = 1ull << 30;
	conf->spill_segment_bytes = 4u << 20;
	conf->spill_sync_ms = 100;
}

static int
check_conf(const struct tl_producer_conf *in, struct tl_producer_conf *c,
        struct sockaddr_storage *ss, socklen_t *sslen)
{
	struct tl_producer_conf d;

	tl_producer_conf_init(&d);
	*c = *in;
#define DEFAULT(f)                                                                                 \
	do {                                                                                       \
		if (c->f == 0)                                                                     \
			c->f = d.f;                                                                \
	} while (0)
	DEFAULT(port);
	DEFAULT(frame_bytes);
	DEFAULT(linger_ms);
	DEFAULT(ack_timeout_ms);
	DEFAULT(backoff_max_ms);
	DEFAULT(mem_frames);
	if (c->window == 0)
		c->window = d.window < c->mem_frames ? d.window : c->mem_frames;
	DEFAULT(unreachable_ms);
	DEFAULT(spill_max_bytes);
	DEFAULT(spill_segment_bytes);
	DEFAULT(spill_sync_ms);
#undef DEFAULT
	if ((c->host == NULL && c->addr == NULL) || c->spill_dir == NULL || c->spill_dir[0] == '\0')
		return -EINVAL;
	if (c->key != NULL && (c->key_len == 0 || c->key_len > TL_FRAME_KEY_MAX))
		return -EINVAL;
	if (c->zstd_level < 0 || c->zstd_level > 22)
		return -EINVAL;
	if (c->frame_bytes < 2 || c->frame_bytes > TL_PRODUCER_FRAME_BYTES_MAX)
		return -EINVAL;
	if (c->jitter_pct > 100 || c->window > c->mem_frames || c->mem_frames > (1u << 20))
		return -EINVAL;
	if (c->backoff_max_ms < c->ack_timeout_ms)
		c->backoff_max_ms = c->ack_timeout_ms;
	memset(ss, 0, sizeof(*ss));
	if (c->addr != NULL) {
		if ((c->addr->sa_family == AF_INET && c->addrlen >= sizeof(struct sockaddr_in)) ||
		        (c->addr->sa_family == AF_INET6 &&
		                c->addrlen >= sizeof(struct sockaddr_in6))) {
			*sslen = c->addr->sa_family == AF_INET ? sizeof(struct sockaddr_in)
			                                       : sizeof(struct sockaddr_in6);
			memcpy(ss, c->addr, *sslen);
			return 0;
		}
		return -EINVAL;
	}
	{
		struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;

		if (inet_pton(AF_INET, c->host, &a4->sin_addr) == 1) {
			a4->sin_family = AF_INET;
			a4->sin_port = htons(c->port);
			*sslen = sizeof(*a4);
		} else if (inet_pton(AF_INET6, c->host, &a6->sin6_addr) == 1) {
			a6->sin6_family = AF_INET6;
			a6->sin6_port = htons(c->port);
			*sslen = sizeof(*a6);
		} else {
			return -EINVAL;
		}
	}
	return 0;
}

int
tl_producer_open(const struct tl_producer_conf *conf, struct tl_producer **out)
{
	struct sockaddr_storage ss;
	socklen_t sslen = 0;
	struct tl_producer *p;
	uint64_t state_id = 0, reserved = 0, max_seq = 0;
	uint32_t max_len = 0;
	int rc, sndbuf = 1 << 20;

	if (out == NULL)
		return -EINVAL;
	*out = NULL;
	if (conf == NULL)
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (p == NULL)
		return -ENOMEM;
	p->fd = p->dirfd = p->lockfd = -1;
	TAILQ_INIT(&p->segs);
	crc32c_init(p->crc_table);
	rc = check_conf(conf, &p->c, &ss, &sslen);
	if (rc != 0)
		goto fail;
	if (conf->key != NULL) {
		memcpy(p->key, conf->key, conf->key_len);
		p->key_len = conf->key_len;
	}
	p->c.key = NULL;
	p->c.addr = NULL;
	p->c.host = NULL;
	p->c.spill_dir = NULL;

	if (mkdir(conf->spill_dir, 0700) != 0 && errno != EEXIST) {
		rc = -errno;
		goto fail;
	}
	p->dirfd = open(conf->spill_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (p->dirfd < 0) {
		rc = -errno;
		goto fail;
	}
	p->lockfd = openat(p->dirfd, LOCK_FILE, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (p->lockfd < 0) {
		rc = -errno;
		goto fail;
	}
	if (flock(p->lockfd, LOCK_EX | LOCK_NB) != 0) {
		rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
		goto fail;
	}

	rc = state_read(p, &state_id, &reserved);
	if (rc < 0)
		goto fail;
	if (rc == 0) {
		if (conf->producer_id != 0 && conf->producer_id != state_id) {
			rc = -EEXIST;
			goto fail;
		}
		p->id = state_id;
	} else {
		p->id = conf->producer_id;
		while (p->id == 0) {
			if (getrandom(&p->id, sizeof(p->id), 0) < 0 && errno != EINTR) {
				rc = -errno;
				goto fail;
			}
		}
		reserved = 0;
		rc = state_write(p, p->id, 0);
		if (rc != 0)
			goto fail;
	}
	p->reserved = reserved;
	unlinkat(p->dirfd, STATE_TMP, 0);
	rc = spill_scan(p, &max_len, &max_seq);
	if (rc != 0)
		goto fail;
	/* Never below a sequence found on disk, whatever the state file says. */
	p->next_seq = (reserved > max_seq ? reserved : max_seq) + 1;

	p->slot_cap = p->c.frame_bytes + TL_PRODUCER_FRAME_OVERHEAD;
	if (max_len > p->slot_cap)
		p->slot_cap = max_len; /* spilled by a run with a larger frame_bytes */
	p->cap = p->c.mem_frames;
	p->ring = calloc(p->cap, sizeof(*p->ring));
	p->slab = malloc((size_t)p->cap * p->slot_cap);
	p->scratch = malloc(p->slot_cap);
	p->open_buf = malloc(p->c.frame_bytes);
	if (p->ring == NULL || p->slab == NULL || p->scratch == NULL || p->open_buf == NULL) {
		rc = -ENOMEM;
		goto fail;
	}
	for (uint32_t i = 0; i < p->cap; i++)
		p->ring[i].buf = p->slab + (size_t)i * p->slot_cap;

	p->fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (p->fd < 0) {
		rc = -errno;
		goto fail;
	}
	/* Best effort: a window of large frames goes out in one burst. */
	(void)setsockopt(p->fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	if (connect(p->fd, (struct sockaddr *)&ss, sslen) != 0) {
		rc = -errno;
		goto fail;
	}
	if (getrandom(&p->rng, sizeof(p->rng), GRND_NONBLOCK) != (ssize_t)sizeof(p->rng))
		p->rng = now_ns();
	p->rng |= 1;
	p->last_progress_ns = now_ns();
	*out = p;
	return 0;
fail:
	while (!TAILQ_EMPTY(&p->segs)) {
		struct segment *s = TAILQ_FIRST(&p->segs);

		TAILQ_REMOVE(&p->segs, s, link);
		free(s);
	}
	if (p->fd >= 0)
		close(p->fd);
	if (p->lockfd >= 0)
		close(p->lockfd);
	if (p->dirfd >= 0)
		close(p->dirfd);
	free(p->ring);
	free(p->slab);
	free(p->scratch);
	free(p->open_buf);
	memset(p->key, 0, sizeof(p->key));
	free(p);
	return rc;
}

int
tl_producer_send(struct tl_producer *p, const void *event, size_t len)
{
	uint64_t now;
	int rc;

	if (p == NULL || event == NULL || len == 0 || memchr(event, '\n', len) != NULL)
		return -EINVAL;
	if (len + 1 > p->c.frame_bytes)
		return -EMSGSIZE;
	now = now_ns();
	if (p->open_count > 0 && (p->open_len + len + 1 > p->c.frame_bytes ||
	                                 p->open_count >= TL_FRAME_MAX_EVENTS)) {
		rc = seal(p, now);
		if (rc != 0)
			return rc;
		/* Send it now rather than at the next poll: less latency, same rules. */
		run_senders(p, now);
	}
	if (p->open_count == 0)
		p->open_since_ns = now;
	memcpy(p->open_buf + p->open_len, event, len);
	p->open_buf[p->open_len + len] = '\n';
	p->open_len += (uint32_t)len + 1;
	p->open_count++;
	p->st.events_queued++;
	p->st.events_pending++;
	return 0;
}

int
tl_producer_next_ms(const struct tl_producer *p)
{
	uint64_t now = now_ns(), due = NEVER;

#define DUE(t)                                                                                     \
	do {                                                                                       \
		if ((t) < due)                                                                     \
			due = (t);                                                                 \
	} while (0)
	if (p->open_count > 0)
		DUE(p->open_since_ns + (uint64_t)p->c.linger_ms * NS_PER_MS);
	for (uint32_t k = 0; k < p->n; k++) {
		const struct pframe *pf = &p->ring[(p->head + k) % p->cap];

		if (pf->state == F_SENT || pf->state == F_WAIT)
			DUE(pf->deadline_ns > p->send_retry_ns ? pf->deadline_ns
			                                       : p->send_retry_ns);
		else if (pf->state == F_QUEUED && p->inflight < p->c.window)
			DUE(p->send_retry_ns);
	}
	if (!p->stalled && p->inflight > 0)
		DUE(p->last_progress_ns + (uint64_t)p->c.unreachable_ms * NS_PER_MS);
	if (!p->stalled && p->disk_only > 0 && p->n < p->cap)
		DUE(0);
	if (p->wseg != NULL && p->sync_due_ns != 0)
		DUE(p->sync_due_ns);
#undef DUE
	if (due == NEVER)
		return -1;
	if (due <= now)
		return 0;
	due = (due - now + NS_PER_MS - 1) / NS_PER_MS;
	return due > INT32_MAX ? INT32_MAX : (int)due;
}

int
tl_producer_fd(const struct tl_producer *p)
{
	return p->fd;
}

int
tl_producer_poll(struct tl_producer *p, int timeout_ms)
{
	struct pollfd pfd;
	int wait, rc;

	if (p == NULL)
		return -EINVAL;
	p->resolved_now = 0;
	read_acks(p);
	rc = run(p, now_ns());
	wait = tl_producer_next_ms(p);
	if (timeout_ms >= 0 && (wait < 0 || wait > timeout_ms))
		wait = timeout_ms;
	if (wait != 0) {
		pfd.fd = p->fd;
		pfd.events = POLLIN;
		pfd.revents = 0;
		(void)poll(&pfd, 1, wait);
	}
	read_acks(p);
	{
		int r = run(p, now_ns());

		if (rc == 0)
			rc = r;
	}
	return rc != 0 ? rc : p->resolved_now;
}

int
tl_producer_flush(struct tl_producer *p, int timeout_ms)
{
	uint64_t start = now_ns();

	if (p == NULL)
		return -EINVAL;
	for (;;) {
		int rc, slice = 100;

		if (p->open_count > 0) {
			rc = seal(p, now_ns());
			if (rc != 0 && rc != -ENOBUFS)
				return rc;
		}
		if (p->st.events_pending == 0)
			return 0;
		if (timeout_ms >= 0) {
			uint64_t spent = (now_ns() - start) / NS_PER_MS;

			if (spent >= (uint64_t)timeout_ms)
				return -ETIMEDOUT;
			if ((uint64_t)slice > (uint64_t)timeout_ms - spent)
				slice = (int)((uint64_t)timeout_ms - spent);
		}
		rc = tl_producer_poll(p, slice);
		if (rc < 0)
			return rc;
	}
}

void
tl_producer_stats(const struct tl_producer *p, struct tl_producer_stats *st)
{
	const struct segment *s;

	*st = p->st;
	st->producer_id = p->id;
	st->next_sequence = p->next_seq;
	st->stalled = p->stalled;
	st->events_open = p->open_count;
	st->pending_mem = p->unresolved;
	st->inflight = p->inflight;
	st->pending_mem_only = p->mem_only;
	st->pending_disk = p->disk_only;
	st->spill_bytes = p->spill_bytes;
	st->spill_segments = p->nsegs;
	st->oldest_pending_ms = 0;
	if (p->n > 0) {
		/* The head is never a resolved hole, and the ring is older than the disk. */
		uint64_t t = p->ring[p->head].sealed_ms, w = wall_ms();

		st->oldest_pending_ms = w > t ? w - t : 0;
	} else if (p->disk_only > 0) {
		TAILQ_FOREACH(s, &p->segs, link)
		{
			if (s->loaded < s->records) {
				uint64_t w = wall_ms();

				st->oldest_pending_ms = w > s->first_ms ? w - s->first_ms : 0;
				break;
			}
		}
	}
}

int
tl_producer_close(struct tl_producer *p, int timeout_ms)
{
	int rc = 0, r;

	if (p == NULL)
		return 0;
	if (timeout_ms != 0)
		(void)tl_producer_flush(p, timeout_ms);
	if (p->open_count > 0) {
		r = seal(p, now_ns());
		if (r != 0)
			rc = r == -ENOBUFS ? -ENOSPC : r;
	}
	r = spill_memory(p);
	if (r != 0 && rc == 0)
		rc = r;
	if (p->wseg != NULL) {
		r = seg_finish(p, p->wseg);
		if (r != 0 && rc == 0)
			rc = r;
	}
	while (!TAILQ_EMPTY(&p->segs)) {
		struct segment *s = TAILQ_FIRST(&p->segs);

		if (s->fd >= 0)
			close(s->fd);
		TAILQ_REMOVE(&p->segs, s, link);
		free(s);
	}
	close(p->fd);
	close(p->lockfd);
	close(p->dirfd);
	free(p->ring);
	free(p->slab);
	free(p->scratch);
	free(p->open_buf);
	memset(p->key, 0, sizeof(p->key));
	free(p);
	return rc;
}
