package metric

import "strconv"

// Kind is the type of a metric family, as exported.
type Kind uint8

// Kinds start at one so that the zero Kind of an unset Family is invalid.
const (
	KindCounter Kind = iota + 1
	KindGauge
	KindHistogram
)

// String returns the Prometheus type name of k.
func (k Kind) String() string {
	switch k {
	case KindCounter:
		return "counter"
	case KindGauge:
		return "gauge"
	case KindHistogram:
		return "histogram"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Label is a label name and value pair.
type Label struct{ Name, Value string }

// Family is one gathered metric family.
//
// LabelNames, each Series' LabelValues and each snapshot's Upper are shared
// with the registry rather than copied, which keeps Gather cheap for large
// families: treat them as read-only.
type Family struct {
	Name, Help string
	Kind       Kind
	LabelNames []string
	Series     []Series
}

// Series is one gathered series of a family.
type Series struct {
	// LabelValues are in the order of the family's LabelNames; nil for an
	// unlabelled family.
	LabelValues []string
	// Value is the value of a counter or gauge.
	Value float64
	// Histogram is the state of a histogram series; nil for other kinds.
	Histogram *HistogramSnapshot
}

// Labels returns the series' labels as name/value pairs, for callers that
// want them joined; it allocates.
func (s Series) Labels(labelNames []string) []Label {
	labels := make([]Label, len(labelNames))
	for i, name := range labelNames {
		labels[i] = Label{Name: name, Value: s.LabelValues[i]}
	}
	return labels
}
