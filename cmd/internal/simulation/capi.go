package simulation

import (
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// capiLoop is the Talos Cluster API control-plane provider's
// bootstrapCluster, acting from the management network (not subject to the
// cuts between nodes): once every replica's apid answers it lists
// /var/lib/etcd/member on every machine and stops if one has it; otherwise
// it sorts the machines' addresses as strings (sort.Strings) and calls
// Bootstrap on the first, taking AlreadyExists as success. It retries until
// it succeeds and cannot be told to skip a cluster.
func (w *world) capiLoop() {
	w.at(w.dur(10*time.Second, 30*time.Second), func() {
		if w.capiDone {
			return
		}

		var addrs []string

		byAddr := map[string]*tnode{}

		for _, n := range w.nodes {
			if !n.cp {
				continue
			}

			if !n.up || !n.apidUp {
				w.capiLoop() // a replica is missing: reconcile later

				return
			}

			if n.etcdVisible() && n.data != 0 {
				w.capiDone = true // an etcd member directory exists

				return
			}

			addrs = append(addrs, n.ip.String())
			byAddr[n.ip.String()] = n
		}

		slices.Sort(addrs)
		first := byAddr[addrs[0]]
		err := w.machinedBootstrapBy(first, "Cluster API")
		w.tracef(first, "Cluster API provider called Bootstrap: %v", err)

		if err == nil || status.Code(err) == codes.AlreadyExists {
			w.capiDone = true

			return
		}

		w.capiLoop()
	})
}

// omniLoop is Omni's ClusterBootstrapStatus controller, from its own
// network: once the cluster's machines answer, it calls Bootstrap on the
// first machine's management address and, unanswered, again no earlier
// than five minutes later.
func (w *world) omniLoop(first *tnode, after time.Duration) {
	w.at(after, func() {
		if !first.up || !first.apidUp || (first.etcdVisible() && first.data != 0) {
			if first.data == 0 {
				w.omniLoop(first, 10*time.Second)
			}

			return
		}

		err := w.machinedBootstrapBy(first, "Omni")
		w.tracef(first, "Omni called Bootstrap: %v", err)

		if err != nil && status.Code(err) != codes.AlreadyExists {
			w.omniLoop(first, 5*time.Minute)
		}
	})
}
