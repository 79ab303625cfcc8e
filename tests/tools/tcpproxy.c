/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tcpproxy: a fault-injecting TCP proxy for the fault suite.
 *
 * It sits between tapline and a ClickHouse server and, on a signal, makes the server look
 * blackholed (accepts, then never answers), refusing (listener closed) or healthy again.
 *
 *   tcpproxy --listen ADDR:PORT --target ADDR:PORT [--pidfile F] [--state-file F]
 *            [--max-conns N] [--buf-size BYTES]
 *
 *   SIGUSR1          BLACKHOLE: existing and new connections are held open, never served
 *   SIGUSR2          NORMAL: held connections are reset (RST), listener reopened if closed
 *   SIGHUP           REFUSE: listener closed, every connection reset (a stopped server)
 *   SIGTERM, SIGINT  print the counters line and exit 0
 *
 * One thread, one poll() loop, non-blocking sockets. Signals arrive through a signalfd so
 * that no work is ever done in a handler and a mode switch happens between two loop
 * iterations, never in the middle of a transfer. Each proxied connection owns two bounded
 * ring buffers (one per direction) allocated the first time its slot is used and kept for
 * the life of the process: a full buffer stops reads on the side that fills it, which is
 * how back-pressure travels from a slow reader to a fast writer.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define TL_PROXY_DEFAULT_CONNS 1024
#define TL_PROXY_MAX_CONNS 65536
#define TL_PROXY_DEFAULT_BUF (256u * 1024u)
#define TL_PROXY_MIN_BUF 4096u
#define TL_PROXY_MAX_BUF (64u * 1024u * 1024u)
/* Bounded so that a connection storm cannot starve established connections. */
#define TL_PROXY_ACCEPT_BURST 64
/* Retry period for a listener that could not be reopened or an fd-exhausted accept. */
#define TL_PROXY_RETRY_MS 200
/* pollfd slots before the per-connection pairs: the signalfd and the listener. */
#define TL_PROXY_PFD_SIG 0
#define TL_PROXY_PFD_LISTEN 1
#define TL_PROXY_PFD_CONN0 2

enum mode {
	MODE_NORMAL,
	MODE_BLACKHOLE,
	MODE_REFUSE,
};

static const char *const mode_names[] = {
        [MODE_NORMAL] = "normal",
        [MODE_BLACKHOLE] = "blackhole",
        [MODE_REFUSE] = "refuse",
};

enum conn_state {
	CONN_FREE,
	CONN_CONNECTING, /* target connect() in progress, client not read yet */
	CONN_OPEN,       /* bytes flow both ways */
	CONN_HELD,       /* blackholed: nothing read or written on either side */
};

struct ring {
	unsigned char *data;
	size_t cap;
	size_t head; /* offset of the oldest unsent byte */
	size_t len;  /* bytes buffered */
};

struct conn {
	enum conn_state state;
	int cfd;          /* accepted client socket */
	int tfd;          /* socket toward the target, -1 when none */
	bool c_eof;       /* client sent FIN (read returned 0) */
	bool t_eof;       /* target sent FIN */
	bool c_shut;      /* FIN forwarded to the client (SHUT_WR done) */
	bool t_shut;      /* FIN forwarded to the target */
	struct ring up;   /* client -> target */
	struct ring down; /* target -> client */
};

struct proxy {
	struct sockaddr_storage listen_addr; /* bound address, concrete port after start */
	socklen_t listen_len;
	struct sockaddr_storage target_addr;
	socklen_t target_len;
	int lfd;
	int sfd;
	enum mode mode;
	bool running;
	bool relisten_pending;   /* reopening the listener failed: retry on a timer */
	int64_t accept_pause_ms; /* no accept() before this (fd exhaustion), 0 = none */
	const char *state_file;
	const char *pidfile;
	size_t max_conns;
	size_t buf_size;
	struct conn *conns;
	size_t high; /* slots [0, high) may be in use */
	size_t active;
	struct pollfd *pfds;
	uint64_t n_conns;
	uint64_t bytes_up;
	uint64_t bytes_down;
	uint64_t n_blackholed;
	uint64_t n_connect_fail;
};

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
close_fd(int *fd)
{
	if (*fd >= 0) {
		close(*fd);
		*fd = -1;
	}
}

/* Close so that the peer sees a reset at once, not an orderly FIN it might wait on. */
static void
close_rst(int *fd)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};

	if (*fd < 0)
		return;
	(void)setsockopt(*fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close_fd(fd);
}

static void
set_nodelay(int fd)
{
	int one = 1;

	/* A proxy must not add Nagle delay on top of the endpoints' own choices. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static size_t
ring_space(const struct ring *r)
{
	return r->cap - r->len;
}

/* Read from fd into r's free space. Returns bytes read, 0 on EOF, -errno (-EAGAIN too). */
static ssize_t
ring_fill(struct ring *r, int fd)
{
	struct iovec iov[2];
	size_t tail = (r->head + r->len) % r->cap;
	size_t space = ring_space(r);
	size_t first = r->cap - tail < space ? r->cap - tail : space;
	int iovcnt = 1;
	ssize_t n;

	iov[0].iov_base = r->data + tail;
	iov[0].iov_len = first;
	if (space > first) {
		iov[1].iov_base = r->data;
		iov[1].iov_len = space - first;
		iovcnt = 2;
	}
	do {
		n = readv(fd, iov, iovcnt);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	r->len += (size_t)n;
	return n;
}

/* Write r's buffered bytes to fd. Returns bytes written or -errno (-EAGAIN too). */
static ssize_t
ring_drain(struct ring *r, int fd)
{
	struct iovec iov[2];
	struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 1};
	size_t first = r->cap - r->head < r->len ? r->cap - r->head : r->len;
	ssize_t n;

	iov[0].iov_base = r->data + r->head;
	iov[0].iov_len = first;
	if (r->len > first) {
		iov[1].iov_base = r->data;
		iov[1].iov_len = r->len - first;
		msg.msg_iovlen = 2;
	}
	do {
		/* MSG_NOSIGNAL: a peer that went away is an error to handle, not a SIGPIPE. */
		n = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	r->len -= (size_t)n;
	/* Rewinding an empty ring keeps the next read in one contiguous segment. */
	r->head = r->len == 0 ? 0 : (r->head + (size_t)n) % r->cap;
	return n;
}

static void
conn_release(struct proxy *p, struct conn *c, bool reset)
{
	if (reset) {
		close_rst(&c->cfd);
		close_rst(&c->tfd);
	} else {
		close_fd(&c->cfd);
		close_fd(&c->tfd);
	}
	c->state = CONN_FREE;
	p->active--;
	while (p->high > 0 && p->conns[p->high - 1].state == CONN_FREE)
		p->high--;
}

static int
conn_buffers(struct proxy *p, struct conn *c)
{
	/* Once per slot: a reused slot keeps its buffers, nothing is allocated per transfer. */
	if (c->up.data == NULL) {
		c->up.data = malloc(p->buf_size);
		if (c->up.data == NULL)
			return -ENOMEM;
		c->up.cap = p->buf_size;
	}
	if (c->down.data == NULL) {
		c->down.data = malloc(p->buf_size);
		if (c->down.data == NULL)
			return -ENOMEM;
		c->down.cap = p->buf_size;
	}
	c->up.head = c->up.len = 0;
	c->down.head = c->down.len = 0;
	return 0;
}

static void
log_conn_error(const char *what, int err)
{
	fprintf(stderr, "tcpproxy: %s: %s\n", what, strerror(err));
}

/*
 * Move whatever can move without blocking, in both directions, and forward FINs once the
 * buffer in front of them has drained. Any hard error resets both sides: a proxy that keeps
 * half of a broken connection alive would hide the fault it is meant to show.
 */
static void
conn_pump(struct proxy *p, struct conn *c)
{
	ssize_t n;

	if (!c->c_eof && ring_space(&c->up) > 0) {
		n = ring_fill(&c->up, c->cfd);
		if (n == 0)
			c->c_eof = true;
		else if (n < 0 && n != -EAGAIN)
			goto reset;
	}
	if (c->up.len > 0) {
		n = ring_drain(&c->up, c->tfd);
		if (n > 0)
			p->bytes_up += (uint64_t)n;
		else if (n != -EAGAIN)
			goto reset;
	}
	if (c->c_eof && c->up.len == 0 && !c->t_shut) {
		if (shutdown(c->tfd, SHUT_WR) < 0)
			goto reset;
		c->t_shut = true;
	}
	if (!c->t_eof && ring_space(&c->down) > 0) {
		n = ring_fill(&c->down, c->tfd);
		if (n == 0)
			c->t_eof = true;
		else if (n < 0 && n != -EAGAIN)
			goto reset;
	}
	if (c->down.len > 0) {
		n = ring_drain(&c->down, c->cfd);
		if (n > 0)
			p->bytes_down += (uint64_t)n;
		else if (n != -EAGAIN)
			goto reset;
	}
	if (c->t_eof && c->down.len == 0 && !c->c_shut) {
		if (shutdown(c->cfd, SHUT_WR) < 0)
			goto reset;
		c->c_shut = true;
	}
	if (c->c_shut && c->t_shut)
		conn_release(p, c, false);
	return;
reset:
	conn_release(p, c, true);
}

static void
conn_connected(struct proxy *p, struct conn *c)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(c->tfd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err == EINPROGRESS || err == EALREADY)
		return;
	if (err != 0) {
		p->n_connect_fail++;
		log_conn_error("connect to target", err);
		conn_release(p, c, true);
		return;
	}
	set_nodelay(c->tfd);
	c->state = CONN_OPEN;
	conn_pump(p, c);
}

/* Start the target leg of a freshly accepted connection; on failure the client is reset. */
static void
conn_start(struct proxy *p, struct conn *c)
{
	int rc;

	if (conn_buffers(p, c) < 0) {
		log_conn_error("buffers", ENOMEM);
		conn_release(p, c, true);
		return;
	}
	c->tfd = socket(p->target_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->tfd < 0) {
		p->n_connect_fail++;
		log_conn_error("socket", errno);
		conn_release(p, c, true);
		return;
	}
	do {
		rc = connect(c->tfd, (const struct sockaddr *)&p->target_addr, p->target_len);
	} while (rc < 0 && errno == EINTR);
	if (rc == 0) {
		set_nodelay(c->tfd);
		c->state = CONN_OPEN;
		return;
	}
	if (errno == EINPROGRESS) {
		c->state = CONN_CONNECTING;
		return;
	}
	p->n_connect_fail++;
	log_conn_error("connect to target", errno);
	conn_release(p, c, true);
}

static int
listener_open(struct proxy *p)
{
	int one = 1;
	int fd;
	int err;

	fd = socket(p->listen_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* Reopening after REFUSE must not trip over the TIME_WAIT of the connections reset. */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		goto fail;
	if (p->listen_addr.ss_family == AF_INET6 &&
	        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
		goto fail;
	if (bind(fd, (const struct sockaddr *)&p->listen_addr, p->listen_len) < 0)
		goto fail;
	if (listen(fd, SOMAXCONN) < 0)
		goto fail;
	/* Port 0 becomes a concrete port here; REFUSE -> NORMAL reopens that same port. */
	p->listen_len = sizeof(p->listen_addr);
	if (getsockname(fd, (struct sockaddr *)&p->listen_addr, &p->listen_len) < 0)
		goto fail;
	p->lfd = fd;
	return 0;
fail:
	err = errno;
	close(fd);
	return -err;
}

static void
write_state(struct proxy *p)
{
	char tmp[4096];
	const char *name = mode_names[p->mode];
	size_t len = strlen(name);
	int fd;
	bool ok;

	if (p->state_file == NULL)
		return;
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", p->state_file) >= sizeof(tmp)) {
		fprintf(stderr, "tcpproxy: state file path too long\n");
		return;
	}
	/* Written aside then renamed: a reader sees the old word or the new one, never half. */
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		log_conn_error(tmp, errno);
		return;
	}
	ok = write(fd, name, len) == (ssize_t)len && write(fd, "\n", 1) == 1;
	ok = close(fd) == 0 && ok;
	if (!ok || rename(tmp, p->state_file) < 0) {
		log_conn_error(p->state_file, errno);
		(void)unlink(tmp);
	}
}

static void
set_mode(struct proxy *p, enum mode m)
{
	size_t held = 0;
	int rc;

	for (size_t i = 0; i < p->high; i++) {
		struct conn *c = &p->conns[i];

		if (c->state == CONN_FREE)
			continue;
		if (m == MODE_REFUSE || (m == MODE_NORMAL && c->state == CONN_HELD)) {
			conn_release(p, c, true);
		} else if (m == MODE_BLACKHOLE && c->state != CONN_HELD) {
			/* Buffered bytes stay where they are: the server stopped mid-stream. */
			c->state = CONN_HELD;
			p->n_blackholed++;
			held++;
		}
	}
	p->mode = m;
	p->relisten_pending = false;
	if (m == MODE_REFUSE) {
		/* Closing the listener also resets whatever sits in its accept queue. */
		close_fd(&p->lfd);
	} else if (p->lfd < 0) {
		rc = listener_open(p);
		if (rc < 0) {
			/* The state file keeps saying "refuse" until the port is ours again. */
			log_conn_error("reopen listener (will retry)", -rc);
			p->relisten_pending = true;
			return;
		}
	}
	fprintf(stderr, "tcpproxy: mode %s (%zu connections held, %zu active)\n", mode_names[m],
	        held, p->active);
	write_state(p);
}

static void
retry_listener(struct proxy *p)
{
	if (listener_open(p) < 0)
		return;
	p->relisten_pending = false;
	fprintf(stderr, "tcpproxy: mode %s (listener reopened)\n", mode_names[p->mode]);
	write_state(p);
}

static struct conn *
conn_slot(struct proxy *p)
{
	for (size_t i = 0; i < p->max_conns; i++) {
		if (p->conns[i].state == CONN_FREE) {
			if (i >= p->high)
				p->high = i + 1;
			return &p->conns[i];
		}
	}
	return NULL;
}

static void
accept_burst(struct proxy *p)
{
	for (int i = 0; i < TL_PROXY_ACCEPT_BURST && p->active < p->max_conns; i++) {
		struct conn *c;
		int fd = accept4(p->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			        errno == ENOMEM) {
				/* Leave the rest in the backlog rather than spin on a ready fd. */
				log_conn_error("accept", errno);
				p->accept_pause_ms = now_ms() + TL_PROXY_RETRY_MS;
			}
			return;
		}
		c = conn_slot(p);
		if (c == NULL) {
			/* Unreachable while active counts correctly; never crash on it. */
			close_rst(&fd);
			return;
		}
		*c = (struct conn){
		        .state = CONN_HELD, .cfd = fd, .tfd = -1, .up = c->up, .down = c->down};
		p->active++;
		p->n_conns++;
		if (p->mode == MODE_BLACKHOLE) {
			/* Accepted, never read, never forwarded: a server that stopped answering.
			 */
			p->n_blackholed++;
			continue;
		}
		set_nodelay(fd);
		conn_start(p, c);
	}
}

static void
handle_signals(struct proxy *p)
{
	struct signalfd_siginfo si;
	ssize_t n;

	for (;;) {
		n = read(p->sfd, &si, sizeof(si));
		if (n < 0 && errno == EINTR)
			continue;
		if (n != (ssize_t)sizeof(si))
			return;
		switch (si.ssi_signo) {
		case SIGUSR1:
			set_mode(p, MODE_BLACKHOLE);
			break;
		case SIGUSR2:
			set_mode(p, MODE_NORMAL);
			break;
		case SIGHUP:
			set_mode(p, MODE_REFUSE);
			break;
		case SIGTERM:
		case SIGINT:
			p->running = false;
			break;
		default:
			break;
		}
	}
}

/* Build the pollfd set: a side is polled only for what it can do now, so nothing spins. */
static nfds_t
poll_prepare(struct proxy *p, int64_t now, int *timeout)
{
	struct pollfd *pl = &p->pfds[TL_PROXY_PFD_LISTEN];

	*timeout = -1;
	p->pfds[TL_PROXY_PFD_SIG] = (struct pollfd){.fd = p->sfd, .events = POLLIN};
	*pl = (struct pollfd){.fd = -1};
	if (p->relisten_pending)
		*timeout = TL_PROXY_RETRY_MS;
	if (p->accept_pause_ms > now) {
		*timeout = (int)(p->accept_pause_ms - now);
	} else if (p->lfd >= 0 && p->active < p->max_conns) {
		/* A full table leaves new connections in the kernel backlog: still no answer. */
		pl->fd = p->lfd;
		pl->events = POLLIN;
	}
	for (size_t i = 0; i < p->high; i++) {
		struct conn *c = &p->conns[i];
		struct pollfd *pc = &p->pfds[TL_PROXY_PFD_CONN0 + 2 * i];
		struct pollfd *pt = pc + 1;
		short ce = 0, te = 0;

		switch (c->state) {
		case CONN_FREE:
			break;
		case CONN_HELD:
			/*
			 * Only to learn that the client gave up (its bytes are never read). A
			 * client that had half-closed before the switch is waiting for an answer
			 * and already shows RDHUP: it is not polled, it stays silent to the end.
			 */
			ce = c->c_eof ? 0 : POLLRDHUP;
			break;
		case CONN_CONNECTING:
			te = POLLOUT;
			break;
		case CONN_OPEN:
			if (!c->c_eof && ring_space(&c->up) > 0)
				ce |= POLLIN;
			if (c->down.len > 0)
				ce |= POLLOUT;
			if (!c->t_eof && ring_space(&c->down) > 0)
				te |= POLLIN;
			if (c->up.len > 0)
				te |= POLLOUT;
			break;
		}
		*pc = (struct pollfd){.fd = ce ? c->cfd : -1, .events = ce};
		*pt = (struct pollfd){.fd = te ? c->tfd : -1, .events = te};
	}
	return (nfds_t)(TL_PROXY_PFD_CONN0 + 2 * p->high);
}

static void
poll_dispatch(struct proxy *p)
{
	size_t high = p->high;

	for (size_t i = 0; i < high; i++) {
		struct conn *c = &p->conns[i];
		short cr = p->pfds[TL_PROXY_PFD_CONN0 + 2 * i].revents;
		short tr = p->pfds[TL_PROXY_PFD_CONN0 + 2 * i + 1].revents;

		if ((cr | tr) == 0)
			continue;
		switch (c->state) {
		case CONN_FREE:
			break;
		case CONN_HELD:
			/*
			 * The client closed or reset a connection nobody will ever answer: free
			 * the slot, or a long blackhole with retrying clients would fill the table.
			 */
			conn_release(p, c, true);
			break;
		case CONN_CONNECTING:
			conn_connected(p, c);
			break;
		case CONN_OPEN:
			conn_pump(p, c);
			break;
		}
	}
}

static int
run(struct proxy *p)
{
	while (p->running) {
		int timeout;
		int64_t now = now_ms();
		nfds_t nfds = poll_prepare(p, now, &timeout);
		int n = poll(p->pfds, nfds, timeout);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_conn_error("poll", errno);
			return -errno;
		}
		if (p->relisten_pending)
			retry_listener(p);
		if (p->pfds[TL_PROXY_PFD_SIG].revents) {
			/*
			 * A switch may have closed connections and reopened the listener under a
			 * recycled fd number: the other revents are stale, poll again.
			 */
			handle_signals(p);
			continue;
		}
		poll_dispatch(p);
		if (p->pfds[TL_PROXY_PFD_LISTEN].revents && p->lfd >= 0)
			accept_burst(p);
	}
	return 0;
}

/* Parse "a.b.c.d:port" or "[v6]:port" (literal addresses only: no DNS in a test tool). */
static int
parse_addr(const char *s, bool port_zero_ok, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *port;
	const char *end;
	struct addrinfo hints = {
	        .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
	struct addrinfo *res;
	unsigned long pn;
	char *stop;
	size_t hl;

	if (s[0] == '[') {
		end = strchr(s, ']');
		if (end == NULL || end[1] != ':')
			return -EINVAL;
		hl = (size_t)(end - s - 1);
		s++;
		port = end + 2;
		hints.ai_family = AF_INET6;
	} else {
		end = strrchr(s, ':');
		if (end == NULL)
			return -EINVAL;
		hl = (size_t)(end - s);
		port = end + 1;
		hints.ai_family = AF_INET;
	}
	if (hl == 0 || hl >= sizeof(host) || *port == '\0')
		return -EINVAL;
	memcpy(host, s, hl);
	host[hl] = '\0';
	errno = 0;
	pn = strtoul(port, &stop, 10);
	if (errno != 0 || *stop != '\0' || port[0] == '-' || port[0] == '+' || pn > 65535 ||
	        (pn == 0 && !port_zero_ok))
		return -EINVAL;
	if (getaddrinfo(host, port, &hints, &res) != 0)
		return -EINVAL;
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

static void
format_addr(const struct sockaddr_storage *ss, char *buf, size_t size)
{
	char host[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;

		inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
		snprintf(buf, size, "[%s]:%u", host, ntohs(a->sin6_port));
	} else {
		const struct sockaddr_in *a = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
		snprintf(buf, size, "%s:%u", host, ntohs(a->sin_port));
	}
}

static int
parse_size(const char *s, size_t min, size_t max, size_t *out)
{
	unsigned long long v;
	char *end;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || end == s || s[0] == '-')
		return -EINVAL;
	if (*end == 'k' || *end == 'K') {
		v *= 1024;
		end++;
	} else if (*end == 'm' || *end == 'M') {
		v *= 1024 * 1024;
		end++;
	}
	if (*end != '\0' || v < min || v > max)
		return -EINVAL;
	*out = (size_t)v;
	return 0;
}

/* Two fds per connection plus a margin: raise the soft limit, or shrink the table to fit. */
static void
fit_fd_limit(struct proxy *p)
{
	struct rlimit rl;
	rlim_t need = (rlim_t)p->max_conns * 2 + 32;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= need)
		return;
	rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need ? need : rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		(void)getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < need) {
		/* Keep a few fds for stdio, the signalfd, the listener and the state file. */
		p->max_conns = rl.rlim_cur > 10 ? (size_t)(rl.rlim_cur - 8) / 2 : 1;
		fprintf(stderr, "tcpproxy: fd limit %llu, max-conns lowered to %zu\n",
		        (unsigned long long)rl.rlim_cur, p->max_conns);
	}
}

static int
write_pidfile(const char *path)
{
	FILE *f = fopen(path, "we");

	if (f == NULL)
		return -errno;
	fprintf(f, "%ld\n", (long)getpid());
	if (fclose(f) != 0)
		return -errno;
	return 0;
}

static void
usage(FILE *out)
{
	fprintf(out, "usage: tcpproxy --listen ADDR:PORT --target ADDR:PORT [--pidfile FILE]\n"
	             "                [--state-file FILE] [--max-conns N] [--buf-size BYTES[k|m]]\n"
	             "  ADDR is an IPv4 literal or [IPv6]; listen PORT 0 picks a free port.\n"
	             "  Prints 'tcpproxy listening ADDR:PORT' once listening.\n"
	             "  SIGUSR1 blackhole, SIGUSR2 normal, SIGHUP refuse, SIGTERM/SIGINT exit;\n"
	             "  the state file holds normal|blackhole|refuse once a switch is complete.\n");
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
	        {"listen", required_argument, NULL, 'l'},
	        {"target", required_argument, NULL, 't'},
	        {"pidfile", required_argument, NULL, 'p'},
	        {"state-file", required_argument, NULL, 's'},
	        {"max-conns", required_argument, NULL, 'n'},
	        {"buf-size", required_argument, NULL, 'b'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	struct proxy px = {.lfd = -1,
	        .sfd = -1,
	        .mode = MODE_NORMAL,
	        .running = true,
	        .max_conns = TL_PROXY_DEFAULT_CONNS,
	        .buf_size = TL_PROXY_DEFAULT_BUF};
	struct proxy *p = &px;
	bool have_listen = false, have_target = false;
	char addr[INET6_ADDRSTRLEN + 16];
	sigset_t mask;
	int status = 1;
	int opt;
	int rc;

	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 'l':
			if (parse_addr(optarg, true, &p->listen_addr, &p->listen_len) < 0) {
				fprintf(stderr, "tcpproxy: bad --listen '%s'\n", optarg);
				return 2;
			}
			have_listen = true;
			break;
		case 't':
			if (parse_addr(optarg, false, &p->target_addr, &p->target_len) < 0) {
				fprintf(stderr, "tcpproxy: bad --target '%s'\n", optarg);
				return 2;
			}
			have_target = true;
			break;
		case 'p':
			p->pidfile = optarg;
			break;
		case 's':
			p->state_file = optarg;
			break;
		case 'n':
			if (parse_size(optarg, 1, TL_PROXY_MAX_CONNS, &p->max_conns) < 0) {
				fprintf(stderr, "tcpproxy: bad --max-conns '%s'\n", optarg);
				return 2;
			}
			break;
		case 'b':
			if (parse_size(optarg, TL_PROXY_MIN_BUF, TL_PROXY_MAX_BUF, &p->buf_size) <
			        0) {
				fprintf(stderr, "tcpproxy: bad --buf-size '%s'\n", optarg);
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!have_listen || !have_target || optind != argc) {
		usage(stderr);
		return 2;
	}

	/*
	 * Blocked before the listener exists: a script may signal as soon as it has read the
	 * port, and the signal must then wait in the signalfd, not kill the process.
	 */
	sigemptyset(&mask);
	sigaddset(&mask, SIGUSR1);
	sigaddset(&mask, SIGUSR2);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0) {
		log_conn_error("sigprocmask", errno);
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	p->sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (p->sfd < 0) {
		log_conn_error("signalfd", errno);
		return 1;
	}

	fit_fd_limit(p);
	p->conns = calloc(p->max_conns, sizeof(*p->conns));
	p->pfds = calloc(TL_PROXY_PFD_CONN0 + 2 * p->max_conns, sizeof(*p->pfds));
	if (p->conns == NULL || p->pfds == NULL) {
		log_conn_error("calloc", ENOMEM);
		goto out;
	}
	for (size_t i = 0; i < p->max_conns; i++)
		p->conns[i].cfd = p->conns[i].tfd = -1;

	rc = listener_open(p);
	if (rc < 0) {
		format_addr(&p->listen_addr, addr, sizeof(addr));
		fprintf(stderr, "tcpproxy: listen on %s: %s\n", addr, strerror(-rc));
		goto out;
	}
	write_state(p);
	if (p->pidfile != NULL && (rc = write_pidfile(p->pidfile)) < 0) {
		log_conn_error(p->pidfile, -rc);
		goto out;
	}
	format_addr(&p->listen_addr, addr, sizeof(addr));
	printf("tcpproxy listening %s\n", addr);
	fflush(stdout);

	if (run(p) == 0)
		status = 0;

	printf("tcpproxy connections %" PRIu64 " bytes_up %" PRIu64 " bytes_down %" PRIu64
	       " blackholed %" PRIu64 "\n",
	        p->n_conns, p->bytes_up, p->bytes_down, p->n_blackholed);
	fflush(stdout);
	if (p->n_connect_fail > 0)
		fprintf(stderr, "tcpproxy: %" PRIu64 " target connects failed\n",
		        p->n_connect_fail);
	if (p->pidfile != NULL)
		(void)unlink(p->pidfile);
out:
	if (p->conns != NULL) {
		for (size_t i = 0; i < p->max_conns; i++) {
			struct conn *c = &p->conns[i];

			close_fd(&c->cfd);
			close_fd(&c->tfd);
			free(c->up.data);
			free(c->down.data);
		}
	}
	free(p->conns);
	free(p->pfds);
	close_fd(&p->lfd);
	close_fd(&p->sfd);
	return status;
}
