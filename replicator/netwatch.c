// SPDX-License-Identifier: Apache-2.0
/*
 * netwatch — reachability of one peer from the kernel's routing state, through
 * libnl (the only file that includes it). Two NETLINK_ROUTE sockets: `ev` is
 * subscribed to the link, address, route and rule groups of the peer's family and
 * only tells us *that* something changed (the events' content is ignored: a route
 * event does not say which route the kernel would now choose); `q` asks the kernel
 * the one question that matters, RTM_GETROUTE for the peer address (`ip route get`,
 * so policy rules, metrics and default routes count exactly as they will for the
 * connection), then RTM_GETLINK for the output link the answer names.
 *
 * Events are coalesced: netwatch_process() drains what is queued and evaluates
 * once, so a burst (a link going down deletes many routes) costs one lookup. If the
 * event socket overflows (ENOBUFS) events were lost; we evaluate anyway, which is
 * all an event could have made us do. No allocation of ours after netwatch_new():
 * the request is built in a stack buffer; libnl allocates its receive buffers and
 * the link object of each lookup and frees them before we return.
 *
 * It does not know about connections, timeouts or retries; the caller decides what
 * a change means.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <netlink/netlink.h>
#include <netlink/socket.h>
#include <netlink/msg.h>
#include <netlink/attr.h>
#include <netlink/route/link.h>
#include <netlink/route/route.h>
#include <netlink/route/rtnl.h>
#include <linux/if.h>
#include <linux/rtnetlink.h>

#include "netwatch.h"

/* A lookup answer that takes longer than this means the kernel side is wedged. */
#define NETWATCH_QUERY_TIMEOUT_MS 1000
/* Datagrams read per lookup at most, skipping stale answers of a timed-out one. */
#define NETWATCH_QUERY_READS_MAX    8
#define NETWATCH_EVENT_RCVBUF_BYTES (256 * 1024)
#define NETWATCH_HOST_BYTES_MAX	    256

struct netwatch {
	struct nl_sock *ev;  /* multicast events, non-blocking; its fd is netwatch_fd() */
	struct nl_sock *q;   /* request/answer, blocking with a receive timeout */
	struct nl_cb *ev_cb; /* event callbacks for ev */
	struct nl_cb *q_cb;  /* answer callbacks for q */
	int family;	     /* AF_INET or AF_INET6 */
	uint8_t addr[16];    /* the peer, network order; addr_len bytes used */
	size_t addr_len;
	char peer[INET6_ADDRSTRLEN];
	bool reachable;
	int last_oif; /* output link of the last route found, to explain its loss */
	char reason[NETWATCH_REASON_BYTES_MAX];
	/* The answer to the lookup in flight (set by the q_cb callbacks). */
	uint32_t seq;
	bool answered;
	int answer_errno; /* the kernel refused: no route (ENETUNREACH, ...) */
	int answer_oif;
	uint8_t answer_type; /* RTN_UNICAST, RTN_LOCAL, ... */
};

/* The RTM_GETROUTE request: header, rtmsg, one RTA_DST attribute. */
struct route_req {
	struct nlmsghdr nh;
	struct rtmsg rtm;
	struct rtattr rta;
	uint8_t dst[16];
};
_Static_assert(offsetof(struct route_req, rtm) == NLMSG_HDRLEN, "rtmsg right after the header");
_Static_assert(offsetof(struct route_req, rta) == NLMSG_LENGTH(sizeof(struct rtmsg)),
	       "RTA_DST right after the rtmsg");
_Static_assert(offsetof(struct route_req, dst) == offsetof(struct route_req, rta) + RTA_LENGTH(0),
	       "RTA_DST payload right after its header");

/* libnl error -> -errno, the few that matter told apart. */
static int nl_errno(int nlerr)
{
	switch (nlerr < 0 ? -nlerr : nlerr) {
	case NLE_NOMEM:
		return -ENOMEM;
	case NLE_AGAIN:
		return -ETIMEDOUT;
	case NLE_PERM:
		return -EPERM;
	case NLE_NOACCESS:
		return -EACCES;
	case NLE_OBJ_NOTFOUND:
	case NLE_NODEV:
		return -ENODEV;
	default:
		return -EIO;
	}
}

static int on_event(struct nl_msg *msg, void *arg)
{
	(void)msg;
	(void)arg;
	return NL_OK; /* content ignored: that it arrived is the news */
}

static int on_answer(struct nl_msg *msg, void *arg)
{
	struct netwatch *nw = arg;
	struct nlmsghdr *nh = nlmsg_hdr(msg);
	struct nlattr *tb[RTA_MAX + 1];
	struct rtmsg *rtm;

	if (nh->nlmsg_seq != nw->seq || nh->nlmsg_type != RTM_NEWROUTE)
		return NL_SKIP; /* stale answer of an earlier, timed-out lookup */
	if (nlmsg_parse(nh, sizeof(*rtm), tb, RTA_MAX, NULL) < 0)
		return NL_SKIP;
	rtm = nlmsg_data(nh);
	nw->answer_type = rtm->rtm_type;
	nw->answer_oif = tb[RTA_OIF] ? (int)nla_get_u32(tb[RTA_OIF]) : 0;
	nw->answered = true;
	return NL_STOP;
}

static int on_answer_error(struct sockaddr_nl *from, struct nlmsgerr *e, void *arg)
{
	struct netwatch *nw = arg;

	(void)from;
	if (e->msg.nlmsg_seq != nw->seq)
		return NL_SKIP;
	nw->answer_errno = e->error < 0 ? -e->error : e->error;
	nw->answered = true;
	return NL_STOP;
}

/*
 * Asks the kernel for its route to the peer. 0 with nw->answer_* set (a route, or
 * answer_errno when the kernel has none), or -errno when netlink itself failed.
 */
static int route_lookup(struct netwatch *nw)
{
	struct route_req req;
	int rc;

	memset(&req, 0, sizeof(req));
	req.nh.nlmsg_len = NLMSG_LENGTH(sizeof(req.rtm)) + RTA_LENGTH(nw->addr_len);
	req.nh.nlmsg_type = RTM_GETROUTE;
	req.nh.nlmsg_flags = NLM_F_REQUEST;
	req.nh.nlmsg_seq = ++nw->seq;
	req.rtm.rtm_family = (unsigned char)nw->family;
	req.rtm.rtm_dst_len = (unsigned char)(nw->addr_len * 8);
	req.rta.rta_type = RTA_DST;
	req.rta.rta_len = RTA_LENGTH(nw->addr_len);
	memcpy(req.dst, nw->addr, nw->addr_len);

	nw->answered = false;
	nw->answer_errno = 0;
	nw->answer_oif = 0;
	nw->answer_type = RTN_UNSPEC;
	rc = nl_sendto(nw->q, &req, req.nh.nlmsg_len);
	if (rc < 0)
		return nl_errno(rc);
	for (int i = 0; i < NETWATCH_QUERY_READS_MAX && !nw->answered; i++) {
		rc = nl_recvmsgs(nw->q, nw->q_cb);
		if (rc < 0 && !nw->answered)
			return nl_errno(rc);
	}
	return nw->answered ? 0 : -ETIMEDOUT;
}

/*
 * The state of link ifindex: 1 up (IFF_UP, and IFF_RUNNING unless loopback), 0 not,
 * with a sentence in nw->reason; -errno if it cannot be read (gone: -ENODEV).
 */
static int link_check(struct netwatch *nw, int ifindex, char *name, size_t name_len)
{
	struct rtnl_link *link = NULL;
	unsigned int flags;
	int rc;

	rc = rtnl_link_get_kernel(nw->q, ifindex, NULL, &link);
	if (rc < 0)
		return nl_errno(rc);
	flags = rtnl_link_get_flags(link);
	snprintf(name, name_len, "%s",
		 rtnl_link_get_name(link) ? rtnl_link_get_name(link) : "(unnamed)");
	rtnl_link_put(link);
	if (!(flags & IFF_UP)) {
		snprintf(nw->reason, sizeof(nw->reason), "link %s (the route to %s) is down", name,
			 nw->peer);
		return 0;
	}
	/* lo has no carrier to lose: up is enough. */
	if (!(flags & IFF_LOOPBACK) && !(flags & IFF_RUNNING)) {
		snprintf(nw->reason, sizeof(nw->reason),
			 "link %s (the route to %s) is up but has no carrier", name, nw->peer);
		return 0;
	}
	return 1;
}

/* The kernel has no usable route: explain with the link we used to leave by. */
static void explain_no_route(struct netwatch *nw, const char *why)
{
	char name[IFNAMSIZ + 16];

	if (nw->last_oif > 0 && link_check(nw, nw->last_oif, name, sizeof(name)) == 0)
		return; /* "link X (the route to P) is down": the likely cause */
	snprintf(nw->reason, sizeof(nw->reason), "no route to %s%s", nw->peer, why);
}

/* Sets nw->reachable and nw->reason from the kernel's current state. */
static int evaluate(struct netwatch *nw)
{
	char name[IFNAMSIZ + 16], type[32];
	int rc;

	rc = route_lookup(nw);
	if (rc)
		return rc;
	if (nw->answer_errno) {
		explain_no_route(nw, "");
		nw->reachable = false;
		return 0;
	}
	if (nw->answer_type != RTN_UNICAST && nw->answer_type != RTN_LOCAL) {
		char why[64];

		snprintf(why, sizeof(why), " (the route is of type %s)",
			 nl_rtntype2str(nw->answer_type, type, sizeof(type)));
		explain_no_route(nw, why);
		nw->reachable = false;
		return 0;
	}
	if (nw->answer_oif <= 0) {
		explain_no_route(nw, " (the route has no output link)");
		nw->reachable = false;
		return 0;
	}
	rc = link_check(nw, nw->answer_oif, name, sizeof(name));
	if (rc == -ENODEV) {
		/* Raced with the link's removal; its events are queued behind. */
		snprintf(nw->reason, sizeof(nw->reason), "no route to %s (its link vanished)",
			 nw->peer);
		nw->reachable = false;
		return 0;
	}
	if (rc < 0)
		return rc;
	nw->last_oif = nw->answer_oif;
	nw->reachable = rc == 1;
	if (nw->reachable)
		snprintf(nw->reason, sizeof(nw->reason), "route to %s via %s is up", nw->peer,
			 name);
	return 0;
}

/* "host", "host:port", "[v6]:port", "v6" -> "host" / "v6" in buf. */
static int split_host(const char *peer, char *buf, size_t len)
{
	const char *start = peer, *end = NULL;
	const char *colon = strchr(peer, ':');

	if (peer[0] == '[') {
		start = peer + 1;
		end = strchr(start, ']');
		if (!end)
			return -EINVAL;
	} else if (colon && !strchr(colon + 1, ':')) {
		end = colon; /* exactly one colon: host:port */
	} else {
		end = peer + strlen(peer);
	}
	if (end == start || (size_t)(end - start) >= len)
		return -EINVAL;
	memcpy(buf, start, (size_t)(end - start));
	buf[end - start] = '\0';
	return 0;
}

static int resolve(struct netwatch *nw, const char *peer_host, char *err, size_t err_len)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res = NULL;
	char host[NETWATCH_HOST_BYTES_MAX];
	int rc;

	if (split_host(peer_host, host, sizeof(host))) {
		snprintf(err, err_len, "'%s' is not a host, host:port or [v6]:port", peer_host);
		return -EINVAL;
	}
	rc = getaddrinfo(host, NULL, &hints, &res);
	if (rc) {
		snprintf(err, err_len, "cannot resolve %s: %s", host, gai_strerror(rc));
		return rc == EAI_MEMORY ? -ENOMEM : -EHOSTUNREACH;
	}
	/* The first answer is the one a connect to the same name tries first. */
	if (res->ai_family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)res->ai_addr;

		nw->family = AF_INET;
		nw->addr_len = 4;
		memcpy(nw->addr, &sin->sin_addr, 4);
	} else if (res->ai_family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)res->ai_addr;

		nw->family = AF_INET6;
		nw->addr_len = 16;
		memcpy(nw->addr, &sin6->sin6_addr, 16);
	} else {
		freeaddrinfo(res);
		snprintf(err, err_len, "%s resolved to neither IPv4 nor IPv6", host);
		return -EAFNOSUPPORT;
	}
	freeaddrinfo(res);
	inet_ntop(nw->family, nw->addr, nw->peer, sizeof(nw->peer));
	return 0;
}

static int open_sockets(struct netwatch *nw, char *err, size_t err_len)
{
	struct timeval tv = { .tv_sec = NETWATCH_QUERY_TIMEOUT_MS / 1000,
			      .tv_usec = (NETWATCH_QUERY_TIMEOUT_MS % 1000) * 1000 };
	int rc;

	nw->ev = nl_socket_alloc();
	nw->q = nl_socket_alloc();
	nw->ev_cb = nl_cb_alloc(NL_CB_DEFAULT);
	nw->q_cb = nl_cb_alloc(NL_CB_DEFAULT);
	if (!nw->ev || !nw->q || !nw->ev_cb || !nw->q_cb) {
		snprintf(err, err_len, "out of memory for the netlink sockets");
		return -ENOMEM;
	}

	/* Events: not answers to anything we sent, so no sequence check. */
	nl_socket_disable_auto_ack(nw->ev);
	nl_cb_set(nw->ev_cb, NL_CB_SEQ_CHECK, NL_CB_CUSTOM, on_event, nw);
	nl_cb_set(nw->ev_cb, NL_CB_VALID, NL_CB_CUSTOM, on_event, nw);
	rc = nl_connect(nw->ev, NETLINK_ROUTE);
	if (rc < 0)
		goto nl_fail;
	/* Subscribe before the first evaluation: no change can fall in between. */
	if (nw->family == AF_INET)
		rc = nl_socket_add_memberships(nw->ev, RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR,
					       RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV4_RULE, 0);
	else
		rc = nl_socket_add_memberships(nw->ev, RTNLGRP_LINK, RTNLGRP_IPV6_IFADDR,
					       RTNLGRP_IPV6_ROUTE, RTNLGRP_IPV6_RULE, 0);
	if (rc < 0)
		goto nl_fail;
	rc = nl_socket_set_nonblocking(nw->ev);
	if (rc < 0)
		goto nl_fail;
	/* Best effort: a bigger buffer makes overflow rarer; overflow is handled. */
	nl_socket_set_buffer_size(nw->ev, NETWATCH_EVENT_RCVBUF_BYTES, 0);

	/*
	 * Queries: no auto-ack, so each request has exactly one answer datagram (the
	 * route, or an error) and nothing is left queued for the next lookup; our
	 * callbacks match the answer to the request by sequence number instead.
	 */
	nl_socket_disable_auto_ack(nw->q);
	nl_cb_set(nw->q_cb, NL_CB_VALID, NL_CB_CUSTOM, on_answer, nw);
	nl_cb_err(nw->q_cb, NL_CB_CUSTOM, on_answer_error, nw);
	rc = nl_connect(nw->q, NETLINK_ROUTE);
	if (rc < 0)
		goto nl_fail;
	if (setsockopt(nl_socket_get_fd(nw->q), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv))) {
		rc = -errno;
		snprintf(err, err_len, "SO_RCVTIMEO on the netlink socket: %s", strerror(errno));
		return rc;
	}
	return 0;
nl_fail:
	snprintf(err, err_len, "netlink route socket: %s", nl_geterror(rc));
	return nl_errno(rc);
}

int netwatch_new(struct netwatch **out, const char *peer_host, char *err, size_t err_len)
{
	struct netwatch *nw;
	int rc;

	*out = NULL;
	nw = calloc(1, sizeof(*nw));
	if (!nw) {
		snprintf(err, err_len, "out of memory");
		return -ENOMEM;
	}
	rc = resolve(nw, peer_host, err, err_len);
	if (rc)
		goto free_nw;
	rc = open_sockets(nw, err, err_len);
	if (rc)
		goto free_nw;
	rc = evaluate(nw);
	if (rc) {
		snprintf(err, err_len, "route lookup for %s: %s", nw->peer, strerror(-rc));
		goto free_nw;
	}
	*out = nw;
	return 0;
free_nw:
	netwatch_free(nw);
	return rc;
}

void netwatch_free(struct netwatch *nw)
{
	if (!nw)
		return;
	nl_socket_free(nw->ev); /* closes the fd */
	nl_socket_free(nw->q);
	nl_cb_put(nw->ev_cb);
	nl_cb_put(nw->q_cb);
	free(nw);
}

int netwatch_fd(const struct netwatch *nw)
{
	return nl_socket_get_fd(nw->ev);
}

int netwatch_process(struct netwatch *nw, bool *changed)
{
	bool was = nw->reachable, news = false;
	int n, rc;

	*changed = false;
	for (int total = 0; total < NETWATCH_EVENTS_PER_PROCESS_MAX; total += n) {
		n = nl_recvmsgs_report(nw->ev, nw->ev_cb);
		if (n == -NLE_AGAIN || n == 0)
			break;
		if (n == -NLE_NOMEM || n == -NLE_MSG_OVERFLOW) {
			/* ENOBUFS: the kernel dropped events. Re-evaluating is all they asked. */
			news = true;
			n = 1;
			continue;
		}
		if (n < 0)
			return nl_errno(n);
		news = true;
	}
	if (!news)
		return 0;
	rc = evaluate(nw);
	if (rc)
		return rc;
	*changed = was != nw->reachable;
	return 0;
}

bool netwatch_reachable(const struct netwatch *nw)
{
	return nw->reachable;
}

const char *netwatch_reason(const struct netwatch *nw)
{
	return nw->reason;
}

const char *netwatch_peer(const struct netwatch *nw)
{
	return nw->peer;
}
