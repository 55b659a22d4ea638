package election

import "sync"

// A daemon reads the same, mostly unchanged, status file of every peer each
// round (every few seconds while it waits), and decoding JSON was most of a
// round's CPU. Decoding is a pure function of the bytes, so the statuses
// decoded last are kept by content and handed out as deep copies: a caller
// may change what it gets without touching the memo.
const statusMemoSize = 512

var statusMemo = struct {
	sync.Mutex
	byContent map[string]*Status
}{byContent: map[string]*Status{}}

func rememberedStatus(data []byte) (Status, bool) {
	statusMemo.Lock()
	defer statusMemo.Unlock()

	st, ok := statusMemo.byContent[string(data)]
	if !ok {
		return Status{}, false
	}

	return st.Clone(), true
}

func rememberStatus(data []byte, st Status) {
	statusMemo.Lock()
	defer statusMemo.Unlock()

	if len(statusMemo.byContent) >= statusMemoSize {
		// Forget all at once: cheaper than an LRU, and a round refills
		// what it uses.
		clear(statusMemo.byContent)
	}

	kept := st.Clone()
	statusMemo.byContent[string(data)] = &kept
}
