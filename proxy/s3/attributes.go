package s3

import (
	"encoding/xml"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// objPart is one part of an object written by a multipart upload: its size
// and the checksum it was uploaded with (base64, of the upload's
// algorithm; "" without one).
type objPart struct {
	Size     int64  `json:"s"`
	Checksum string `json:"c,omitempty"`
}

type getObjectAttributesResult struct {
	XMLName      xml.Name     `xml:"GetObjectAttributesResponse"`
	NS           string       `xml:"xmlns,attr"`
	ETag         string       `xml:"ETag,omitempty"`
	Checksum     *checksumXML `xml:"Checksum,omitempty"`
	ObjectParts  *objectParts `xml:"ObjectParts,omitempty"`
	StorageClass string       `xml:"StorageClass,omitempty"`
	ObjectSize   *int64       `xml:"ObjectSize,omitempty"`
}

// checksumXML holds one checksum under its algorithm's element.
type checksumXML struct {
	CRC32     string `xml:"ChecksumCRC32,omitempty"`
	CRC32C    string `xml:"ChecksumCRC32C,omitempty"`
	CRC64NVME string `xml:"ChecksumCRC64NVME,omitempty"`
	SHA1      string `xml:"ChecksumSHA1,omitempty"`
	SHA256    string `xml:"ChecksumSHA256,omitempty"`
}

// newChecksumXML returns the element for algo (as in x-amz-checksum-<algo>)
// and value, or nil when there is none.
func newChecksumXML(algo, value string) *checksumXML {
	c := &checksumXML{}
	switch algo {
	case "crc32":
		c.CRC32 = value
	case "crc32c":
		c.CRC32C = value
	case "crc64nvme":
		c.CRC64NVME = value
	case "sha1":
		c.SHA1 = value
	case "sha256":
		c.SHA256 = value
	default:
		return nil
	}
	if value == "" {
		return nil
	}
	return c
}

type objectParts struct {
	PartsCount           int           `xml:"PartsCount"`
	PartNumberMarker     int           `xml:"PartNumberMarker"`
	NextPartNumberMarker int           `xml:"NextPartNumberMarker"`
	MaxParts             int           `xml:"MaxParts"`
	IsTruncated          bool          `xml:"IsTruncated"`
	Parts                []attrPartXML `xml:"Part"`
}

type attrPartXML struct {
	PartNumber int   `xml:"PartNumber"`
	Size       int64 `xml:"Size"`
	checksumXML
}

// getObjectAttributes answers GetObjectAttributes: the attributes named in
// x-amz-object-attributes, and for an object written by a multipart
// upload its parts, max-parts at a time after part-number-marker.
func (q *request) getObjectAttributes() {
	want := map[string]bool{}
	for _, h := range q.r.Header.Values("X-Amz-Object-Attributes") {
		for _, a := range strings.Split(h, ",") {
			if a = strings.TrimSpace(a); a != "" {
				want[a] = true
			}
		}
	}
	if len(want) == 0 {
		q.fail(errInvalidArgument("x-amz-object-attributes names no attribute (ETag, Checksum, ObjectParts, StorageClass, ObjectSize)"), nil)
		return
	}
	maxParts, marker := 1000, 0
	for name, dst := range map[string]*int{"X-Amz-Max-Parts": &maxParts, "X-Amz-Part-Number-Marker": &marker} {
		if s := q.r.Header.Get(name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 {
				q.fail(errInvalidArgument("%s %q: want a number", name, s), nil)
				return
			}
			*dst = n
		}
	}
	maxParts = min(maxParts, 1000)
	_, _, info, ok := q.statKey()
	if !ok {
		return
	}
	etag, meta := etagOf(info)
	if st := preconditions(q.r.Header, etag, time.UnixMilli(info.GetLastModificationTimeMs())); st != 0 {
		q.fail(errorf("PreconditionFailed", http.StatusPreconditionFailed, "at least one of the preconditions you specified did not hold"), nil)
		return
	}
	res := getObjectAttributesResult{NS: xmlNS}
	if want["ETag"] {
		res.ETag = etag
	}
	if want["StorageClass"] {
		res.StorageClass = "STANDARD"
	}
	if want["ObjectSize"] {
		n := info.GetLength()
		res.ObjectSize = &n
	}
	if want["Checksum"] && meta != nil {
		res.Checksum = newChecksumXML(meta.ChecksumAlgo, meta.Checksum)
	}
	if want["ObjectParts"] && meta != nil && len(meta.Parts) > 0 {
		op := &objectParts{PartsCount: len(meta.Parts), PartNumberMarker: marker, MaxParts: maxParts}
		for i, pt := range meta.Parts {
			num := i + 1
			if num <= marker {
				continue
			}
			if len(op.Parts) == maxParts {
				op.IsTruncated = true
				break
			}
			x := attrPartXML{PartNumber: num, Size: pt.Size}
			if c := newChecksumXML(meta.ChecksumAlgo, pt.Checksum); c != nil {
				x.checksumXML = *c
			}
			op.Parts = append(op.Parts, x)
			op.NextPartNumberMarker = num
		}
		res.ObjectParts = op
	}
	q.w.Header().Set("Last-Modified", time.UnixMilli(info.GetLastModificationTimeMs()).UTC().Format(http.TimeFormat))
	writeXML(q.w, http.StatusOK, res)
}
