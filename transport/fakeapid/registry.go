package fakeapid

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Registry is the etcd world shared by fake nodes: which nodes exist, which
// etcd clusters were created by a Bootstrap, and who joined them. It is what
// lets a test see a double bootstrap: Talos itself never checks other nodes,
// so every accepted Bootstrap creates a cluster, and a second one is the bug.
//
// NewRegistry keeps it in memory (one process); OpenRegistry keeps it in a
// JSON file guarded by flock, so fake nodes in separate processes (one per
// network namespace) share it.
type Registry struct {
	mu   sync.Mutex
	dir  string // "" = in memory
	mem  registryState
	now  func() time.Time
	lock *os.File
}

// Cluster is one etcd cluster created by an accepted Bootstrap.
type Cluster struct {
	ID        int       `json:"id"`
	CA        string    `json:"ca"`      // PKI.Fingerprint of the nodes' cluster
	Founder   string    `json:"founder"` // IP of the node that accepted Bootstrap
	CreatedAt time.Time `json:"createdAt"`
	// Superseded: the founder accepted Bootstrap again before its data
	// directory filled, restarting etcd in bootstrap mode (a new cluster).
	Superseded bool `json:"superseded,omitempty"`
	// Members as of the moment Clusters was called.
	Members []Member `json:"-"`
}

// Member is a node in an etcd cluster.
type Member struct {
	Name  string    `json:"name"`
	IP    string    `json:"ip"`
	Since time.Time `json:"since"`
}

// nodeRecord is what the registry knows of a node to compute its etcd state
// and what other nodes of its CA list of it in cluster discovery. Every node
// is recorded, workers too.
type nodeRecord struct {
	IP            string        `json:"ip"`
	Name          string        `json:"name"`
	CA            string        `json:"ca"`
	ControlPlane  bool          `json:"controlPlane"`
	StartedAt     time.Time     `json:"startedAt"`
	JoinDelay     time.Duration `json:"joinDelay"`
	DataFillDelay time.Duration `json:"dataFillDelay"`
	HealthyDelay  time.Duration `json:"healthyDelay"`

	// Discovery: what the node publishes as its Affiliate. Files written
	// before these fields existed read as zero; affiliate() fills in.
	NodeID            string       `json:"nodeID,omitempty"`
	MachineType       string       `json:"machineType,omitempty"`
	TalosVersion      string       `json:"talosVersion,omitempty"`
	Addrs             []netip.Addr `json:"addrs,omitempty"`
	DiscoveryDisabled bool         `json:"discoveryDisabled,omitempty"`
	// StoppedAt: the node's Server was closed (zero while it runs).
	StoppedAt time.Time `json:"stoppedAt,omitzero"`
}

type registryState struct {
	Nodes    []nodeRecord `json:"nodes"`
	Clusters []Cluster    `json:"clusters"`
}

const registryFile = "registry.json"

// NewRegistry is an in-memory registry.
func NewRegistry() *Registry {
	return &Registry{now: time.Now}
}

// OpenRegistry is a registry kept in dir/registry.json, shared by every
// process that opens the same dir.
func OpenRegistry(dir string) (*Registry, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create registry dir: %w", err)
	}

	lock, err := os.OpenFile(filepath.Join(dir, "registry.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open registry lock: %w", err)
	}

	return &Registry{dir: dir, now: time.Now, lock: lock}, nil
}

// Close releases the lock file of a file registry.
func (r *Registry) Close() error {
	if r.lock == nil {
		return nil
	}

	return r.lock.Close()
}

// Clusters lists every cluster ever created, oldest first, with its current
// members.
func (r *Registry) Clusters() ([]Cluster, error) {
	var out []Cluster

	err := r.view(func(st *registryState) error {
		now := r.now()
		for _, c := range st.Clusters {
			c.Members = st.members(c.ID, now)
			out = append(out, c)
		}

		return nil
	})

	return out, err
}

// view runs fn on a consistent snapshot.
func (r *Registry) view(fn func(*registryState) error) error {
	return r.transact(false, fn)
}

// update runs fn and stores what it changed.
func (r *Registry) update(fn func(*registryState) error) error {
	return r.transact(true, fn)
}

func (r *Registry) transact(write bool, fn func(*registryState) error) error {
	r.mu.Lock()
	defer r.mu.Unlock()

	if r.dir == "" {
		return fn(&r.mem)
	}

	how := unix.LOCK_SH
	if write {
		how = unix.LOCK_EX
	}

	if err := unix.Flock(int(r.lock.Fd()), how); err != nil {
		return fmt.Errorf("lock registry: %w", err)
	}

	defer unix.Flock(int(r.lock.Fd()), unix.LOCK_UN) //nolint:errcheck

	path := filepath.Join(r.dir, registryFile)

	var st registryState

	data, err := os.ReadFile(path)

	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("read registry: %w", err)
	default:
		if err := json.Unmarshal(data, &st); err != nil {
			return fmt.Errorf("parse registry %s: %w", path, err)
		}
	}

	if err := fn(&st); err != nil {
		return err
	}

	if !write {
		return nil
	}

	data, err = json.MarshalIndent(&st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode registry: %w", err)
	}

	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil { //nolint:gosec // test fixture
		return fmt.Errorf("write registry: %w", err)
	}

	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("replace registry: %w", err)
	}

	return nil
}

func (st *registryState) register(n nodeRecord) {
	for i := range st.Nodes {
		if st.Nodes[i].IP == n.IP && st.Nodes[i].CA == n.CA {
			st.Nodes[i] = n

			return
		}
	}

	st.Nodes = append(st.Nodes, n)
}

// stop marks the node started at startedAt as stopped at; a newer node on
// the same IP (a restart) keeps running.
func (st *registryState) stop(ip, ca string, startedAt, at time.Time) {
	for i := range st.Nodes {
		n := &st.Nodes[i]
		if n.IP == ip && n.CA == ca && n.StartedAt.Equal(startedAt) && n.StoppedAt.IsZero() {
			n.StoppedAt = at
		}
	}
}

// discoverable are the nodes of CA ca that a node's discovery lists at now:
// those that publish themselves (discovery enabled) and run, or stopped
// less than ttl ago (the stale entry of a vanished node).
func (st *registryState) discoverable(ca string, now time.Time, ttl time.Duration) []nodeRecord {
	var out []nodeRecord

	for _, n := range st.Nodes {
		if n.CA != ca || n.DiscoveryDisabled {
			continue
		}

		if !n.StoppedAt.IsZero() && (ttl <= 0 || !now.Before(n.StoppedAt.Add(ttl))) {
			continue
		}

		out = append(out, n)
	}

	return out
}

func (st *registryState) node(ip, ca string) (nodeRecord, bool) {
	for _, n := range st.Nodes {
		if n.IP == ip && n.CA == ca {
			return n, true
		}
	}

	return nodeRecord{}, false
}

// createCluster records an accepted Bootstrap on n.
func (st *registryState) createCluster(n nodeRecord, at time.Time) Cluster {
	for i := range st.Clusters {
		if st.Clusters[i].Founder == n.IP && st.Clusters[i].CA == n.CA {
			st.Clusters[i].Superseded = true
		}
	}

	c := Cluster{ID: len(st.Clusters) + 1, CA: n.CA, Founder: n.IP, CreatedAt: at}
	st.Clusters = append(st.Clusters, c)

	return c
}

// etcdView is one node's etcd as of a moment.
type etcdView struct {
	ClusterID int // 0: not part of any cluster yet
	Founder   bool
	FilledAt  time.Time // the data directory is written from then on
	HealthyAt time.Time
}

// Running tells whether the node's etcd answers (its data dir is written).
func (v etcdView) Running(now time.Time) bool { return v.ClusterID != 0 && !now.Before(v.FilledAt) }

// Healthy tells whether the node's etcd is up and healthy.
func (v etcdView) Healthy(now time.Time) bool { return v.ClusterID != 0 && !now.Before(v.HealthyAt) }

// etcdOf computes node n's etcd: a node that accepted Bootstrap runs the
// cluster it created; any other control-plane node of the same CA joins the
// oldest live cluster JoinDelay after that cluster's founder became healthy
// (or after the node started, if later), as Talos's etcd PreFunc
// (buildInitialCluster) keeps retrying to add itself as a member.
func (st *registryState) etcdOf(n nodeRecord, now time.Time) etcdView {
	if !n.ControlPlane {
		return etcdView{}
	}

	var founded *Cluster

	for i := range st.Clusters {
		c := &st.Clusters[i]
		if c.Founder == n.IP && c.CA == n.CA && !c.Superseded && !now.Before(c.CreatedAt) {
			founded = c
		}
	}

	join, joinAt := st.joinTarget(n)

	if founded != nil && (join == nil || founded.CreatedAt.Before(joinAt)) {
		filled := founded.CreatedAt.Add(n.DataFillDelay)

		return etcdView{ClusterID: founded.ID, Founder: true, FilledAt: filled, HealthyAt: filled.Add(n.HealthyDelay)}
	}

	if join != nil && !now.Before(joinAt) {
		return etcdView{ClusterID: join.ID, FilledAt: joinAt, HealthyAt: joinAt.Add(n.HealthyDelay)}
	}

	return etcdView{}
}

// joinTarget is the cluster n joins and when, or nil.
func (st *registryState) joinTarget(n nodeRecord) (*Cluster, time.Time) {
	for i := range st.Clusters {
		c := &st.Clusters[i]
		if c.CA != n.CA || c.Founder == n.IP || c.Superseded {
			continue
		}

		// A member can be added only once the founder's etcd is healthy.
		start := c.CreatedAt
		if f, ok := st.node(c.Founder, c.CA); ok {
			start = start.Add(f.DataFillDelay + f.HealthyDelay)
		}

		if n.StartedAt.After(start) {
			start = n.StartedAt
		}

		return c, start.Add(n.JoinDelay)
	}

	return nil, time.Time{}
}

// members of cluster id at now: every node whose etcd runs in it.
func (st *registryState) members(id int, now time.Time) []Member {
	var out []Member

	for _, n := range st.Nodes {
		v := st.etcdOf(n, now)
		if v.ClusterID == id && v.Running(now) {
			out = append(out, Member{Name: n.Name, IP: n.IP, Since: v.FilledAt})
		}
	}

	slices.SortFunc(out, func(a, b Member) int { return a.Since.Compare(b.Since) })

	return out
}
