#!/bin/bash
# Manual smoke check for issue 12 (root): client - router - server namespaces,
# nft rejects in the router, /probe?debug=true from the client. Run from the
# repo root after cargo build. To be replaced by tests/netns_icmp.rs.
set -u
S=i12$$; C=$S-c; R=$S-r; V=$S-s
cleanup(){ ip netns del $C 2>/dev/null; ip netns del $R 2>/dev/null; ip netns del $V 2>/dev/null; }
trap cleanup EXIT
ip netns add $C; ip netns add $R; ip netns add $V
ip link add c0 netns $C type veth peer name r0 netns $R
ip link add r1 netns $R type veth peer name s0 netns $V
for n in $C $R $V; do ip -n $n link set lo up; done
ip -n $C link set c0 up; ip -n $R link set r0 up; ip -n $R link set r1 up; ip -n $V link set s0 up
ip -n $C addr add 192.0.2.2/24 dev c0; ip -n $R addr add 192.0.2.1/24 dev r0
ip -n $R addr add 198.51.100.1/24 dev r1; ip -n $V addr add 198.51.100.2/24 dev s0
ip -n $C addr add 2001:db8:1::2/64 dev c0 nodad; ip -n $R addr add 2001:db8:1::1/64 dev r0 nodad
ip -n $R addr add 2001:db8:2::1/64 dev r1 nodad; ip -n $V addr add 2001:db8:2::2/64 dev s0 nodad
ip -n $C route add default via 192.0.2.1; ip -n $V route add default via 198.51.100.1
ip -n $C -6 route add default via 2001:db8:1::1; ip -n $V -6 route add default via 2001:db8:2::1
ip netns exec $R sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
ip netns exec $R nft -f - <<'NFT'
table inet i12 {
 chain forward {
  type filter hook forward priority 0;
  meta nfproto ipv4 tcp dport 81 reject with icmp type host-unreachable
  meta nfproto ipv4 tcp dport 82 reject with icmp type admin-prohibited
  meta nfproto ipv6 tcp dport 81 reject with icmpv6 type addr-unreachable
  meta nfproto ipv6 tcp dport 82 reject with icmpv6 type admin-prohibited
 }
}
NFT
ip netns exec $C timeout 20 ./target/debug/synack_exporter --web.listen-address 127.0.0.1:9215 >/tmp/i12exp.log 2>&1 &
sleep 1.5
for t in 198.51.100.2:81 198.51.100.2:82 '[2001:db8:2::2]:81' '[2001:db8:2::2]:82'; do
  echo "== $t"; ip netns exec $C timeout 8 curl -s "http://127.0.0.1:9215/probe?module=tcp_halfopen&target=$t&debug=true" | grep -Ei "icmp|probe failed|probe_success "
done
kill %1 2>/dev/null; wait
