package http

import (
	"encoding/json"

	"warehouse/ports"
)

// AppendJSONString exposes the hand-written JSON string encoder to the fuzz test.
var AppendJSONString = appendJSONString

// HistoryPageJSON returns the hand-written JSON of page and what encoding/json writes of
// the same list.
func HistoryPageJSON(page ports.HistoryPage) (handWritten, encodingJSON []byte, err error) {
	encodingJSON, err = json.Marshal(historyListOf(page))
	return appendHistoryPage(nil, page), encodingJSON, err
}

// AppendHistoryPage and MarshalHistoryPage are the two encodings of a history page, for
// the benchmark that compares them.
func AppendHistoryPage(dst []byte, page ports.HistoryPage) []byte {
	return appendHistoryPage(dst, page)
}

// MarshalHistoryPage is what encoding/json writes of page (see AppendHistoryPage).
func MarshalHistoryPage(page ports.HistoryPage) ([]byte, error) {
	return json.Marshal(historyListOf(page))
}

// historyListOf is the history list of a page, as appendHistoryPage writes it.
func historyListOf(page ports.HistoryPage) historyList {
	out := historyList{Items: make([]historyJSON, 0, len(page.Items))}
	for _, h := range page.Items {
		out.Items = append(out.Items, historyJSON{
			MovementID: h.MovementID.String(), Event: string(h.Kind), Source: h.Source, EventID: h.EventID,
			Timestamp: formatTime(h.Position.Timestamp), RecordedAt: formatTime(h.RecordedAt), Delta: h.Delta, Balance: h.Balance,
		})
	}
	if page.Next != nil {
		next := encodeHistoryCursor(*page.Next)
		out.NextCursor = &next
	}
	return out
}
