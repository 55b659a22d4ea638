package discovery

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport/fakeapid"
)

// Seed settings, kept to compare against.
const (
	seedConcurrency = 50
	seedTimeout     = 2 * time.Second
)

// heapPeak samples the live heap while a sweep runs. ReadMemStats stops the
// world briefly; every few milliseconds is enough to see the plateau a
// sweep reaches.
type heapPeak struct {
	base uint64
	peak uint64
	stop chan struct{}
	done sync.WaitGroup
}

func startHeapPeak() *heapPeak {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	h := &heapPeak{base: ms.HeapAlloc, peak: ms.HeapAlloc, stop: make(chan struct{})}
	h.done.Go(func() {
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			runtime.ReadMemStats(&ms)
			h.peak = max(h.peak, ms.HeapAlloc)
			select {
			case <-h.stop:
				return
			case <-t.C:
			}
		}
	})
	return h
}

// end returns the peak growth of the heap over the start, in bytes.
func (h *heapPeak) end() uint64 {
	close(h.stop)
	h.done.Wait()
	return h.peak - h.base
}

type sweepRun struct {
	Name        string
	Prefix      string
	Concurrency int
	Timeout     time.Duration
	Want        int // control-plane peers the sweep must find
}

type sweepResult struct {
	Name     string
	Seconds  float64
	PeakHeap uint64
	Probed   int
	Peers    int
	Silent   int
	Foreign  int
	Failed   int
	// Neighbours is the scanner namespace's IPv4 neighbour entries right
	// after the sweep (netns benchmark only).
	Neighbours int
}

// sweepOnce runs one first-time sweep (a fresh Scanner, so every peer is
// dialled) and checks that it found what it should.
func sweepOnce(ctx context.Context, id transport.Identity, port uint16, r sweepRun) (sweepResult, error) {
	seq, err := Hosts(netip.MustParsePrefix(r.Prefix), 0)
	if err != nil {
		return sweepResult{}, err
	}
	s, err := NewScanner(ScannerOptions{
		Identity: id, Dialer: transport.NewDialer(id), Port: port,
		Timeout: r.Timeout, Concurrency: r.Concurrency, Logger: zerolog.Nop(),
	})
	if err != nil {
		return sweepResult{}, err
	}
	defer s.Close()
	heap := startHeapPeak()
	start := time.Now()
	res, err := s.Scan(ctx, seq)
	elapsed := time.Since(start)
	peak := heap.end()
	if err != nil {
		return sweepResult{}, err
	}
	if len(res.ControlPlane) != r.Want {
		return sweepResult{}, fmt.Errorf("%s: %d control-plane peers, want %d (%+v)", r.Name, len(res.ControlPlane), r.Want, res)
	}
	return sweepResult{
		Name: r.Name, Seconds: elapsed.Seconds(), PeakHeap: peak, Probed: res.Probed,
		Peers: len(res.ControlPlane), Silent: res.Silent, Foreign: res.Foreign, Failed: res.Failed,
	}, nil
}

// loopbackPeers starts a fake apid of the cluster on each address, all on
// one port, and returns the identity that trusts them.
func loopbackPeers(b *testing.B, ips ...string) (*fakeapid.Identity, uint16) {
	pki := mustPKI(b, clusterPKI)
	port := freePort(b)
	for _, ip := range ips {
		startAPID(b, pki, port, fakeapid.Node{}, ip)
	}
	return adminIdentity(b, pki), port
}

// BenchmarkSweep sweeps a loopback /24 where three fake apids answer and
// every other address refuses at once. Refusals on loopback cost no
// timeout, so this measures the scanner's own cost per address; the
// netns benchmark measures real timeouts.
func BenchmarkSweep(b *testing.B) {
	id, port := loopbackPeers(b, "127.43.0.10", "127.43.0.20", "127.43.0.30")
	for _, r := range []sweepRun{
		{Name: "seed-50", Prefix: "127.43.0.0/24", Concurrency: seedConcurrency, Timeout: seedTimeout, Want: 3},
		{Name: fmt.Sprintf("default-%d", DefaultScanConcurrency), Prefix: "127.43.0.0/24", Concurrency: DefaultScanConcurrency, Timeout: seedTimeout, Want: 3},
	} {
		b.Run(r.Name, func(b *testing.B) {
			for b.Loop() {
				if _, err := sweepOnce(b.Context(), id, port, r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSweepHeap16 sweeps a loopback /16 (65534 addresses, refused at
// once, three peers) and reports the peak heap growth, which must follow
// the concurrency and not the size of the range: compare the /20.
func BenchmarkSweepHeap16(b *testing.B) {
	id, port := loopbackPeers(b, "127.44.0.10", "127.44.100.20", "127.44.200.30")
	for _, r := range []sweepRun{
		{Name: "20-c256", Prefix: "127.44.0.0/20", Concurrency: 256, Timeout: seedTimeout, Want: 1},
		{Name: "16-c50", Prefix: "127.44.0.0/16", Concurrency: 50, Timeout: seedTimeout, Want: 3},
		{Name: "16-c256", Prefix: "127.44.0.0/16", Concurrency: 256, Timeout: seedTimeout, Want: 3},
		{Name: "16-c1024", Prefix: "127.44.0.0/16", Concurrency: 1024, Timeout: seedTimeout, Want: 3},
	} {
		b.Run(r.Name, func(b *testing.B) {
			var peak uint64
			for b.Loop() {
				res, err := sweepOnce(b.Context(), id, port, r)
				if err != nil {
					b.Fatal(err)
				}
				peak = max(peak, res.PeakHeap)
			}
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
		})
	}
}
