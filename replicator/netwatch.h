/* SPDX-License-Identifier: Apache-2.0 */
/*
 * netwatch — is the peer reachable right now, and tell me the instant that
 * changes. Watches the kernel's routing (NETLINK_ROUTE: links, addresses, IPv4 and
 * IPv6 routes) so a sender or receiver can pause as soon as the route to its peer
 * disappears or the link it leaves by goes down, instead of waiting for TCP
 * timeouts, and reconnect as soon as it comes back instead of waiting for a
 * backoff timer. Reachability is the kernel's own route lookup for the peer (as
 * `ip route get ADDR` does) plus the state of the output link: administratively
 * up and with carrier (IFF_UP and IFF_RUNNING); the loopback link only needs to be
 * up. It says nothing about the peer itself (a reachable peer may still not
 * answer: that stays the job of the connection's timeouts), nor about gateways'
 * neighbour state, and it does not know what a connection or a frame is.
 * The only module that includes libnl headers.
 *
 * Use: netwatch_new(), poll(netwatch_fd()) for POLLIN, on readability call
 * netwatch_process() and, when it says the state changed, read
 * netwatch_reachable() and netwatch_reason(). Not thread-safe: one owner.
 */
#ifndef PVREPL_NETWATCH_H
#define PVREPL_NETWATCH_H

#include <stdbool.h>
#include <stddef.h>

struct netwatch;

/* netlink messages read per netwatch_process() call at most; the rest wait. */
#define NETWATCH_EVENTS_PER_PROCESS_MAX 256
/* The longest reason sentence, NUL included. */
#define NETWATCH_REASON_BYTES_MAX 192

/*
 * Resolves peer_host once (getaddrinfo; an IP literal or a name, optionally with
 * ":port" or as "[v6]:port", the port is ignored), opens the netlink sockets and
 * evaluates reachability a first time. On success *out is the caller's, to
 * netwatch_free(). 0 or -errno with a sentence in err.
 */
int netwatch_new(struct netwatch **out, const char *peer_host, char *err, size_t err_len);
void netwatch_free(struct netwatch *nw);

/* The fd to poll(2) for POLLIN; owned by nw (do not read or close it). */
int netwatch_fd(const struct netwatch *nw);

/*
 * Reads the pending netlink events (non-blocking, NETWATCH_EVENTS_PER_PROCESS_MAX
 * at most) and, if any arrived, evaluates reachability again. *changed is set to
 * whether netwatch_reachable() flipped. 0 or -errno (the netlink socket failed;
 * reachability is then unknown and left as it was).
 */
int netwatch_process(struct netwatch *nw, bool *changed);

/* True if a route to the peer exists and its output link is up with carrier. */
bool netwatch_reachable(const struct netwatch *nw);

/*
 * Why: "no route to 10.231.1.2", "link vethA (the route to 10.231.1.2) is down",
 * "route to 10.231.1.2 via vethA is up", ... Owned by nw, valid until the next
 * netwatch_process().
 */
const char *netwatch_reason(const struct netwatch *nw);

/* The peer address as resolved, numeric ("10.231.1.2", "fd00::2"). Owned by nw. */
const char *netwatch_peer(const struct netwatch *nw);

#endif
