/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tapline's XDP program: steer telemetry UDP into the AF_XDP socket of the receive queue,
 * pass everything else to the kernel untouched.
 *
 * Compiled with clang -target bpf and embedded in tl_xdp.c through a libbpf skeleton.
 * The program's name (tapline_xdp) is how tl_xdp_open() recognises one of ours left
 * attached by an earlier run; keep it, and keep it within the 15 characters the kernel
 * stores.
 *
 * Every header access is bounds-checked against data_end before it is read; the loops
 * are bounded so the verifier can prove termination. What counts as telemetry:
 *  - UDP whose destination port is set in tl_ports (IPv4 with options, IPv6 after up to
 *    MAX_EXT_HDRS hop-by-hop / routing / destination-options / fragment headers),
 *    behind up to two 802.1Q / 802.1ad tags;
 *  - the first fragment of such a datagram (it carries the UDP header);
 *  - every non-first fragment of any UDP datagram: it carries no port, and the pipeline
 *    needs all of a datagram's fragments to reassemble it. Non-first fragments of UDP
 *    datagrams to other ports are lost to the kernel; the pipeline counts them as
 *    expired reassemblies.
 *
 * Counters (per CPU, one struct, one lookup per frame): every frame is either redirected
 * or passed; parse_failed and redirect_failed are subsets of passed.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define MAX_VLAN_TAGS 2
#define MAX_EXT_HDRS 8

#define ETH_P_8021Q_ 0x8100
#define ETH_P_8021AD_ 0x88a8

#define IP_MF_OFFSET 0x3fff /* MF flag and fragment offset */
#define IP_OFFSET 0x1fff    /* fragment offset (8-byte units) */
#define IP6_OFFSET 0xfff8   /* IPv6 fragment offset (in place, 8-byte units) */

#define NEXTHDR_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_DEST 60

/* Header layouts declared here, not taken from <linux/ip.h> and friends: those pull in
 * bitfields and byte-order macros that differ between user-space and kernel builds. */
struct eth_hdr {
	__u8 dst[6];
	__u8 src[6];
	__be16 proto;
};

struct vlan_hdr {
	__be16 tci;
	__be16 proto;
};

struct ip4_hdr {
	__u8 ver_ihl;
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__sum16 check;
	__be32 saddr;
	__be32 daddr;
};

struct ip6_hdr {
	__be32 ver_tc_flow;
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u8 saddr[16];
	__u8 daddr[16];
};

struct ip6_opt_hdr {
	__u8 nexthdr;
	__u8 hdrlen; /* in 8-byte units, not counting the first 8 bytes */
};

struct ip6_frag_hdr {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off;
	__be32 identification;
};

struct udp_hdr {
	__be16 source;
	__be16 dest;
	__be16 len;
	__sum16 check;
};

/* The layout user space reads (tl_xdp.c struct prog_counters): append only. */
struct tl_xdp_counters {
	__u64 redirected;
	__u64 passed;
	__u64 parse_failed;
	__u64 redirect_failed;
};

/* One bit per UDP port, host order: user space sets the telemetry ports before attach. */
struct tl_xdp_ports {
	__u64 bits[65536 / 64];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tl_xdp_ports);
} tl_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tl_xdp_counters);
} tl_counters SEC(".maps");

/* Indexed by RX queue; user space sizes it (first queue + workers) before loading. */
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} tl_xsks SEC(".maps");

enum verdict {
	V_PASS,      /* not telemetry */
	V_TELEMETRY, /* to the socket */
	V_BAD,       /* could not parse: passed, counted */
};

static __always_inline enum verdict
port_verdict(const struct udp_hdr *udp)
{
	const struct tl_xdp_ports *ports;
	__u32 zero = 0, port = bpf_ntohs(udp->dest);

	ports = bpf_map_lookup_elem(&tl_ports, &zero);
	if (!ports)
		return V_PASS;
	/* The mask is redundant for a 16-bit port but lets the verifier bound the index
	 * whatever it concluded about the byte swap. */
	return (ports->bits[(port >> 6) & 1023] >> (port & 63)) & 1 ? V_TELEMETRY : V_PASS;
}

static __always_inline enum verdict
udp_verdict(void *pos, void *end)
{
	struct udp_hdr *udp = pos;

	if ((void *)(udp + 1) > end)
		return V_BAD;
	return port_verdict(udp);
}

static __always_inline enum verdict
ip4_verdict(void *pos, void *end)
{
	struct ip4_hdr *ip = pos;
	__u32 hlen;
	__u16 frag;

	if ((void *)(ip + 1) > end)
		return V_BAD;
	if ((ip->ver_ihl >> 4) != 4)
		return V_BAD;
	hlen = (ip->ver_ihl & 0xf) * 4;
	if (hlen < sizeof(*ip))
		return V_BAD;
	if (ip->protocol != IPPROTO_UDP)
		return V_PASS;
	frag = bpf_ntohs(ip->frag_off);
	/* A non-first fragment has no UDP header: it may belong to a telemetry datagram. */
	if (frag & IP_OFFSET)
		return V_TELEMETRY;
	return udp_verdict(pos + hlen, end);
}

static __always_inline enum verdict
ip6_verdict(void *pos, void *end)
{
	struct ip6_hdr *ip6 = pos;
	__u8 next;

	if ((void *)(ip6 + 1) > end)
		return V_BAD;
	if ((bpf_ntohl(ip6->ver_tc_flow) >> 28) != 6)
		return V_BAD;
	next = ip6->nexthdr;
	pos = ip6 + 1;
#pragma unroll
	for (int i = 0; i < MAX_EXT_HDRS; i++) {
		if (next == IPPROTO_UDP)
			return udp_verdict(pos, end);
		if (next == NEXTHDR_FRAGMENT) {
			struct ip6_frag_hdr *fh = pos;

			if ((void *)(fh + 1) > end)
				return V_BAD;
			next = fh->nexthdr;
			if (bpf_ntohs(fh->frag_off) & IP6_OFFSET)
				return next == IPPROTO_UDP ? V_TELEMETRY : V_PASS;
			pos = fh + 1;
		} else if (next == NEXTHDR_HOP || next == NEXTHDR_ROUTING || next == NEXTHDR_DEST) {
			struct ip6_opt_hdr *oh = pos;

			if ((void *)(oh + 1) > end)
				return V_BAD;
			next = oh->nexthdr;
			pos += ((__u32)oh->hdrlen + 1) * 8;
		} else {
			return V_PASS; /* ICMPv6, TCP, ESP, no next header, ... */
		}
	}
	/* Still extension headers after MAX_EXT_HDRS, or the last one was UDP. */
	if (next == IPPROTO_UDP)
		return udp_verdict(pos, end);
	return V_BAD;
}

static __always_inline enum verdict
classify(void *data, void *end)
{
	struct eth_hdr *eth = data;
	void *pos;
	__u16 proto;

	if ((void *)(eth + 1) > end)
		return V_BAD;
	proto = bpf_ntohs(eth->proto);
	pos = eth + 1;
#pragma unroll
	for (int i = 0; i < MAX_VLAN_TAGS; i++) {
		struct vlan_hdr *vh = pos;

		if (proto != ETH_P_8021Q_ && proto != ETH_P_8021AD_)
			break;
		if ((void *)(vh + 1) > end)
			return V_BAD;
		proto = bpf_ntohs(vh->proto);
		pos = vh + 1;
	}
	if (proto == ETH_P_IP)
		return ip4_verdict(pos, end);
	if (proto == ETH_P_IPV6)
		return ip6_verdict(pos, end);
	if (proto == ETH_P_8021Q_ || proto == ETH_P_8021AD_)
		return V_BAD; /* a third tag */
	return V_PASS;        /* ARP, LLDP, ... */
}

SEC("xdp")
int
tapline_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct tl_xdp_counters *cnt;
	enum verdict v = classify(data, end);
	__u32 zero = 0;
	long act;

	cnt = bpf_map_lookup_elem(&tl_counters, &zero);
	if (v == V_TELEMETRY) {
		/* The flags argument is the action when the queue has no socket. */
		act = bpf_redirect_map(&tl_xsks, ctx->rx_queue_index, XDP_PASS);
		if (act == XDP_REDIRECT) {
			if (cnt)
				cnt->redirected++;
			return XDP_REDIRECT;
		}
		if (cnt) {
			cnt->redirect_failed++;
			cnt->passed++;
		}
		return XDP_PASS;
	}
	if (cnt) {
		if (v == V_BAD)
			cnt->parse_failed++;
		cnt->passed++;
	}
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
