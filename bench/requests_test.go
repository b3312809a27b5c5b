package bench

import "testing"

func TestRequestCounts(t *testing.T) {
	d := requestDiff(map[string]uint64{"LOOKUP": 5, "GETATTR": 2}, map[string]uint64{"LOOKUP": 9, "GETATTR": 2, "READ": 1})
	if len(d) != 2 || d["LOOKUP"] != 4 || d["READ"] != 1 {
		t.Fatalf("requestDiff = %v", d)
	}
	med := medianRequests([]Measurement{
		{Requests: map[string]uint64{"LOOKUP": 10, "OPEN": 1}},
		{Requests: map[string]uint64{"LOOKUP": 30}},
		{Requests: map[string]uint64{"LOOKUP": 20, "OPEN": 3}},
		{}, // a run that did not count is left out, not taken as zeros
	})
	if med["LOOKUP"] != 20 || med["OPEN"] != 1 {
		t.Fatalf("medianRequests = %v", med)
	}
	if got := fmtRequests(map[string]float64{"LOOKUP": 5300, "GETATTR": 12, "READ": 12}, 2); got != "LOOKUP 5.3k, GETATTR 12, ..." {
		t.Fatalf("fmtRequests = %q", got)
	}
	if medianRequests([]Measurement{{}}) != nil {
		t.Fatal("no counts should give nil")
	}
}
