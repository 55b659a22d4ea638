package election

import (
	"encoding/json"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"testing"
	"time"
)

func memoSample() Status {
	inc := Incarnation{IP: netip.MustParseAddr("198.18.0.2"), BootID: "boot-a", Node: "cp-1"}
	at := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)

	return Status{
		Version: StatusVersion, Incarnation: inc, Phase: PhaseLocked, Intent: 3, WithdrawnThrough: 2,
		Lock:           &IntentRef{Leader: inc, Number: 3},
		Cluster:        &Evidence{Node: inc, What: "member", At: at},
		QuorumMismatch: &Mismatch{Node: inc, Quorum: 1, At: at},
		Candidates:     []Incarnation{inc},
		PastBoots:      []string{"boot-0"},
		UpdatedAt:      at,
	}
}

// Clone must copy every pointer, slice and map of Status, or a status
// handed out by the memo would share memory with the one it keeps.
func TestCloneSharesNothing(t *testing.T) {
	orig := memoSample()
	cp := orig.Clone()

	v, c := reflect.ValueOf(orig), reflect.ValueOf(cp)
	for i := range v.NumField() {
		f := v.Type().Field(i)

		switch f.Type.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Map:
			if v.Field(i).IsNil() {
				t.Fatalf("the sample leaves %s nil: give it a value so that its copy is checked", f.Name)
			}

			if v.Field(i).UnsafePointer() == c.Field(i).UnsafePointer() {
				t.Errorf("Clone shares %s with the original", f.Name)
			}
		}
	}

	if !reflect.DeepEqual(orig, cp) {
		t.Errorf("Clone changed the status:\n%+v\n%+v", orig, cp)
	}
}

// The memo returns what a fresh decode returns, and a caller's change to it
// does not reach the next caller.
func TestParseStatusMemoHandsOutCopies(t *testing.T) {
	data, err := MarshalStatus(memoSample())
	if err != nil {
		t.Fatal(err)
	}

	var fresh Status
	if err := json.Unmarshal(data, &fresh); err != nil {
		t.Fatal(err)
	}

	for i := range 3 {
		got, err := ParseStatus(data)
		if err != nil {
			t.Fatal(err)
		}

		if !reflect.DeepEqual(*got, fresh) {
			t.Fatalf("decode %d differs from a fresh one:\n%+v\n%+v", i, *got, fresh)
		}

		got.Lock.Number = 99
		got.PastBoots[0] = "changed"
		got.Phase = PhaseIdle
	}

	if _, err := ParseStatus([]byte(`{"version": 1}`)); err == nil {
		t.Error("an invalid status was accepted")
	}
}

// StatusAsRead must say exactly what a reader decodes, or a reader that
// finds the writer's memo acts on a status the file does not hold. Every
// field of Status is filled by reflection, so that a field added later is
// checked too: with times in other zones and with monotonic readings,
// empty and nil lists, and strings JSON cannot carry.
func TestStatusAsReadIsWhatAReaderDecodes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	remembered := 0

	for i := range 3000 {
		var s Status
		fillRandomly(rng, reflect.ValueOf(&s).Elem())

		data, err := json.MarshalIndent(s, "", "  ")
		if err != nil {
			continue // a time JSON cannot encode: MarshalStatus fails on it
		}

		var decoded Status
		if err := json.Unmarshal(data, &decoded); err != nil {
			t.Fatal(err)
		}

		read, ok := StatusAsRead(s)
		if !ok {
			continue
		}

		remembered++

		if !reflect.DeepEqual(read, decoded) {
			t.Fatalf("status %d: StatusAsRead says\n%+v\na reader decodes\n%+v\nfrom\n%s", i, read, decoded, data)
		}
	}

	if remembered < 300 {
		t.Fatalf("only %d of 3000 random statuses could be told without decoding: the test checks too little", remembered)
	}
}

// fillRandomly sets v (settable) to a random value of its type, with the
// values that encode or decode unlike themselves among them.
func fillRandomly(rng *rand.Rand, v reflect.Value) {
	switch v.Interface().(type) {
	case time.Time:
		now := time.Now() // Local, with a monotonic reading
		times := []time.Time{
			{}, now, now.UTC(), time.Date(2026, 3, 1, 8, 0, 0, 123, time.UTC),
			time.Date(2026, 3, 1, 8, 0, 0, 0, time.FixedZone("Z0", 0)),
		}
		if rng.IntN(30) == 0 {
			times = []time.Time{time.Date(2026, 3, 1, 8, 0, 0, 0, time.FixedZone("CET", 3600))}
		}

		v.Set(reflect.ValueOf(times[rng.IntN(len(times))]))

		return
	case netip.Addr:
		v.Set(reflect.ValueOf([]netip.Addr{
			{}, netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("fd00::1"),
			netip.MustParseAddr("fe80::1%eth0"), netip.MustParseAddr("::ffff:198.18.0.3"),
		}[rng.IntN(5)]))

		return
	}

	switch v.Kind() {
	case reflect.String:
		texts := []string{"", "locked", "é", "<tag>"}
		if rng.IntN(60) == 0 {
			texts = []string{"bad \xff byte"}
		}

		v.SetString(texts[rng.IntN(len(texts))])
	case reflect.Bool:
		v.SetBool(rng.IntN(2) == 1)
	case reflect.Int, reflect.Int64:
		v.SetInt(rng.Int64N(5))
	case reflect.Uint64:
		v.SetUint(rng.Uint64N(5))
	case reflect.Pointer:
		if rng.IntN(3) > 0 {
			v.Set(reflect.New(v.Type().Elem()))
			fillRandomly(rng, v.Elem())
		}
	case reflect.Slice:
		if n := rng.IntN(4) - 1; n >= 0 {
			v.Set(reflect.MakeSlice(v.Type(), n, n))

			for i := range n {
				fillRandomly(rng, v.Index(i))
			}
		}
	case reflect.Struct:
		for i := range v.NumField() {
			fillRandomly(rng, v.Field(i))
		}
	default:
		panic("fillRandomly: no random value for " + v.Type().String())
	}
}
