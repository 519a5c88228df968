/*
 * spansignals.processors._native: the span path's hot loops in C.
 *
 * Two parts. The OTLP span scanner (scan, span_attributes) is explained in collector/spanscan.py,
 * the module that wraps it; RED's batch update (bucket_durations) in red.py. The scanner's story,
 * in short: upb (the protobuf runtime the receivers parse with) builds a Python wrapper for every
 * field read, which made reading each span's fields and building its view the largest share of
 * the collector's per-span CPU. This scanner walks the request bytes that upb has already
 * accepted and builds the span views directly, with their attributes decoded only when a
 * derivation asks for them.
 *
 * The contract, which the tests check against the Python path on generated requests:
 *   scan() returns views only when the Python path would have accepted every span of the request
 *   (validation.py's rules) and built equal views; anything it is not sure of (a rule broken, an
 *   encoding that protobuf would merge, an unknown wire type, a nesting deeper than MAX_DEPTH)
 *   returns None, and the caller takes the Python path. It never reads outside the buffer, on
 *   any input.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>
#include <math.h>

#define MAX_DEPTH 32

/* Results of the checking walks. */
#define SCAN_OK 0
#define SCAN_BAIL 1 /* not sure: take the Python path */
#define SCAN_ERROR -1 /* a Python exception is set */

typedef struct {
    uint32_t number;
    int wire;
    const uint8_t *data; /* length-delimited: the payload */
    size_t len;
    uint64_t value; /* varint, fixed64, fixed32 */
} field_t;

static int
read_varint(const uint8_t **pp, const uint8_t *end, uint64_t *out)
{
    const uint8_t *p = *pp;
    uint64_t value = 0;
    for (int shift = 0; shift < 64 && p < end; shift += 7) {
        uint8_t byte = *p++;
        value |= (uint64_t)(byte & 0x7F) << shift;
        if (!(byte & 0x80)) {
            *pp = p;
            *out = value;
            return 1;
        }
    }
    return 0; /* truncated, or longer than ten bytes */
}

static uint64_t
read_le(const uint8_t *p, int width)
{
    uint64_t value = 0;
    for (int i = width - 1; i >= 0; i--) {
        value = (value << 8) | p[i];
    }
    return value;
}

/* 1: a field was read into *f; 0: at the end; -1: malformed (groups included: OTLP has none). */
static int
next_field(const uint8_t **pp, const uint8_t *end, field_t *f)
{
    if (*pp >= end) {
        return 0;
    }
    uint64_t tag;
    if (!read_varint(pp, end, &tag) || (tag >> 32) || (tag >> 3) == 0) {
        return -1;
    }
    f->number = (uint32_t)(tag >> 3);
    f->wire = (int)(tag & 7);
    const uint8_t *p = *pp;
    switch (f->wire) {
    case 0:
        if (!read_varint(pp, end, &f->value)) {
            return -1;
        }
        return 1;
    case 1:
        if (end - p < 8) {
            return -1;
        }
        f->value = read_le(p, 8);
        *pp = p + 8;
        return 1;
    case 2: {
        uint64_t length;
        if (!read_varint(pp, end, &length) || length > (uint64_t)(end - *pp)) {
            return -1;
        }
        f->data = *pp;
        f->len = (size_t)length;
        *pp += length;
        return 1;
    }
    case 5:
        if (end - p < 4) {
            return -1;
        }
        f->value = read_le(p, 4);
        *pp = p + 4;
        return 1;
    default:
        return -1;
    }
}

/* --- checking walks: lengths, and an encoding whose values the decoder below reads as upb does */

static int check_any(const uint8_t *p, const uint8_t *end, size_t limit, int depth);

/* KeyValue { string key = 1; AnyValue value = 2; } */
static int
check_kv(const uint8_t *p, const uint8_t *end, size_t limit, int depth)
{
    field_t f;
    int r, values = 0;
    if (depth > MAX_DEPTH) {
        return SCAN_BAIL;
    }
    while ((r = next_field(&p, end, &f)) == 1) {
        if (f.number == 1) {
            if (f.wire != 2 || f.len > limit) {
                return SCAN_BAIL;
            }
        }
        else if (f.number == 2) {
            /* a second value would be merged into the first by protobuf: not ours to mimic */
            if (f.wire != 2 || ++values > 1) {
                return SCAN_BAIL;
            }
            int c = check_any(f.data, f.data + f.len, limit, depth + 1);
            if (c != SCAN_OK) {
                return c;
            }
        }
    }
    return r < 0 ? SCAN_BAIL : SCAN_OK;
}

/* ArrayValue { repeated AnyValue values = 1; } and KeyValueList { repeated KeyValue values = 1; } */
static int
check_list(const uint8_t *p, const uint8_t *end, size_t limit, int depth, int of_kvs)
{
    field_t f;
    int r;
    if (depth > MAX_DEPTH) {
        return SCAN_BAIL;
    }
    while ((r = next_field(&p, end, &f)) == 1) {
        if (f.number != 1) {
            continue;
        }
        if (f.wire != 2) {
            return SCAN_BAIL;
        }
        int c = of_kvs ? check_kv(f.data, f.data + f.len, limit, depth + 1)
                       : check_any(f.data, f.data + f.len, limit, depth + 1);
        if (c != SCAN_OK) {
            return c;
        }
    }
    return r < 0 ? SCAN_BAIL : SCAN_OK;
}

/* AnyValue: a oneof of string 1, bool 2, int64 3, double 4, ArrayValue 5, KeyValueList 6,
 * bytes 7. More than one member present would need protobuf's last-wins and merge rules. */
static int
check_any(const uint8_t *p, const uint8_t *end, size_t limit, int depth)
{
    field_t f;
    int r, members = 0;
    if (depth > MAX_DEPTH) {
        return SCAN_BAIL;
    }
    while ((r = next_field(&p, end, &f)) == 1) {
        switch (f.number) {
        case 1:
        case 7:
            if (f.wire != 2 || f.len > limit) {
                return SCAN_BAIL;
            }
            break;
        case 2:
        case 3:
            if (f.wire != 0) {
                return SCAN_BAIL;
            }
            break;
        case 4:
            if (f.wire != 1) {
                return SCAN_BAIL;
            }
            break;
        case 5:
        case 6: {
            if (f.wire != 2) {
                return SCAN_BAIL;
            }
            int c = check_list(f.data, f.data + f.len, limit, depth + 1, f.number == 6);
            if (c != SCAN_OK) {
                return c;
            }
            break;
        }
        default:
            continue; /* an unknown field: upb keeps it aside, it is no value */
        }
        if (++members > 1) {
            return SCAN_BAIL;
        }
    }
    return r < 0 ? SCAN_BAIL : SCAN_OK;
}

/* --- text cache ------------------------------------------------------------------------------ */

/* Span names and attribute keys repeat across spans and requests ("GET /api/...", "http.route"):
 * one str object per distinct text saves the allocation and, downstream, the hashing (str caches
 * its hash) and the comparisons (identity first) of every dict lookup on it. A direct-mapped
 * table of the last text seen per slot; a collision just decodes and replaces. Short texts only. */
#define TEXT_CACHE_SLOTS 1024
#define TEXT_CACHE_MAX_LEN 96
static PyObject *text_cache[TEXT_CACHE_SLOTS];

static PyObject *
decode_text(const uint8_t *p, size_t n)
{
    if (n > TEXT_CACHE_MAX_LEN) {
        return PyUnicode_DecodeUTF8((const char *)p, (Py_ssize_t)n, NULL);
    }
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h = (h ^ p[i]) * 16777619u;
    }
    PyObject **slot = &text_cache[h & (TEXT_CACHE_SLOTS - 1)];
    PyObject *cached = *slot;
    if (cached != NULL) {
        Py_ssize_t len;
        const char *utf8 = PyUnicode_AsUTF8AndSize(cached, &len);
        if (utf8 != NULL && (size_t)len == n && memcmp(utf8, p, n) == 0) {
            return Py_NewRef(cached);
        }
        if (utf8 == NULL) {
            PyErr_Clear();
        }
    }
    PyObject *text = PyUnicode_DecodeUTF8((const char *)p, (Py_ssize_t)n, NULL);
    if (text != NULL) {
        Py_XSETREF(*slot, Py_NewRef(text));
    }
    return text;
}

/* --- decoding values (on bytes check_* accepted; still bounds-checked on any input) ---------- */

static PyObject *decode_any(const uint8_t *p, const uint8_t *end, int depth);

static PyObject *
malformed(void)
{
    PyErr_SetString(PyExc_ValueError, "malformed OTLP attribute encoding");
    return NULL;
}

/* Decode one KeyValue into dict[key] = value (last occurrence wins, as in a dict built in order). */
static int
decode_kv_into(PyObject *dict, const uint8_t *p, const uint8_t *end, int depth)
{
    field_t f;
    int r;
    const uint8_t *key = NULL, *value = NULL;
    size_t key_len = 0, value_len = 0;
    if (depth > MAX_DEPTH) {
        malformed();
        return -1;
    }
    while ((r = next_field(&p, end, &f)) == 1) {
        if (f.number == 1 && f.wire == 2) {
            key = f.data;
            key_len = f.len;
        }
        else if (f.number == 2 && f.wire == 2) {
            value = f.data;
            value_len = f.len;
        }
    }
    if (r < 0) {
        malformed();
        return -1;
    }
    PyObject *k = decode_text(key ? key : (const uint8_t *)"", key_len);
    if (k == NULL) {
        return -1;
    }
    PyObject *v;
    if (value != NULL) {
        v = decode_any(value, value + value_len, depth + 1);
    }
    else {
        v = Py_NewRef(Py_None);
    }
    if (v == NULL) {
        Py_DECREF(k);
        return -1;
    }
    int rc = PyDict_SetItem(dict, k, v);
    Py_DECREF(k);
    Py_DECREF(v);
    return rc;
}

static PyObject *
decode_list(const uint8_t *p, const uint8_t *end, int depth, int of_kvs)
{
    field_t f;
    int r;
    if (depth > MAX_DEPTH) {
        return malformed();
    }
    if (of_kvs) {
        PyObject *dict = PyDict_New();
        if (dict == NULL) {
            return NULL;
        }
        while ((r = next_field(&p, end, &f)) == 1) {
            if (f.number == 1 && f.wire == 2 && decode_kv_into(dict, f.data, f.data + f.len, depth + 1) < 0) {
                Py_DECREF(dict);
                return NULL;
            }
        }
        if (r < 0) {
            Py_DECREF(dict);
            return malformed();
        }
        return dict;
    }
    PyObject *items = PyList_New(0);
    if (items == NULL) {
        return NULL;
    }
    while ((r = next_field(&p, end, &f)) == 1) {
        if (f.number != 1 || f.wire != 2) {
            continue;
        }
        PyObject *item = decode_any(f.data, f.data + f.len, depth + 1);
        if (item == NULL || PyList_Append(items, item) < 0) {
            Py_XDECREF(item);
            Py_DECREF(items);
            return NULL;
        }
        Py_DECREF(item);
    }
    if (r < 0) {
        Py_DECREF(items);
        return malformed();
    }
    PyObject *tuple = PyList_AsTuple(items);
    Py_DECREF(items);
    return tuple;
}

/* An AnyValue as any_value_to_python gives it: the last oneof member present, None when empty. */
static PyObject *
decode_any(const uint8_t *p, const uint8_t *end, int depth)
{
    field_t f, last;
    int r, found = 0;
    if (depth > MAX_DEPTH) {
        return malformed();
    }
    while ((r = next_field(&p, end, &f)) == 1) {
        if (f.number >= 1 && f.number <= 7) {
            last = f;
            found = 1;
        }
    }
    if (r < 0) {
        return malformed();
    }
    if (!found) {
        Py_RETURN_NONE;
    }
    switch (last.number) {
    case 1:
        return last.wire == 2 ? decode_text(last.data, last.len) : malformed();
    case 2:
        return last.wire == 0 ? PyBool_FromLong(last.value != 0) : malformed();
    case 3:
        return last.wire == 0 ? PyLong_FromLongLong((long long)(int64_t)last.value) : malformed();
    case 4: {
        if (last.wire != 1) {
            return malformed();
        }
        double d;
        memcpy(&d, &last.value, sizeof d);
        return PyFloat_FromDouble(d);
    }
    case 5:
    case 6:
        return last.wire == 2 ? decode_list(last.data, last.data + last.len, depth + 1, last.number == 6)
                              : malformed();
    default: /* 7 */
        return last.wire == 2 ? PyBytes_FromStringAndSize((const char *)last.data, (Py_ssize_t)last.len)
                              : malformed();
    }
}

/* --- span_attributes(body, start, end) -> dict --------------------------------------------- */

/* SCAN_OK when every attribute (field `field_number`) of the message at [p, end) is encoded the
 * way decode_kv_into reads exactly as upb does; SCAN_BAIL otherwise. */
static int
check_attributes(const uint8_t *p, const uint8_t *end, uint32_t field_number)
{
    field_t f;
    int r;
    while ((r = next_field(&p, end, &f)) == 1) {
        if (f.number != field_number) {
            continue;
        }
        if (f.wire != 2 || check_kv(f.data, f.data + f.len, SIZE_MAX, 1) != SCAN_OK) {
            return SCAN_BAIL;
        }
    }
    return r < 0 ? SCAN_BAIL : SCAN_OK;
}

static int
span_attributes_into(PyObject *dict, const uint8_t *p, const uint8_t *end, uint32_t field_number)
{
    field_t f;
    int r;
    while ((r = next_field(&p, end, &f)) == 1) {
        if (f.number == field_number && f.wire == 2 && decode_kv_into(dict, f.data, f.data + f.len, 1) < 0) {
            return -1;
        }
    }
    if (r < 0) {
        malformed();
        return -1;
    }
    return 0;
}

static PyObject *
span_attributes(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "span_attributes(body: bytes, start: int, end: int)");
        return NULL;
    }
    Py_ssize_t size = PyBytes_GET_SIZE(args[0]);
    Py_ssize_t start = PyLong_AsSsize_t(args[1]);
    Py_ssize_t stop = PyLong_AsSsize_t(args[2]);
    if ((start == -1 || stop == -1) && PyErr_Occurred()) {
        return NULL;
    }
    if (start < 0 || stop < start || stop > size) {
        PyErr_SetString(PyExc_ValueError, "span range outside the body");
        return NULL;
    }
    const uint8_t *base = (const uint8_t *)PyBytes_AS_STRING(args[0]);
    /* Span.attributes is field 9. Checked here, not in scan(), so that spans whose attributes no
     * derivation reads never pay for it; an encoding protobuf would merge gives None, and the
     * caller decodes the span with upb instead. */
    if (check_attributes(base + start, base + stop, 9) != SCAN_OK) {
        Py_RETURN_NONE;
    }
    PyObject *dict = PyDict_New();
    if (dict == NULL) {
        return NULL;
    }
    if (span_attributes_into(dict, base + start, base + stop, 9) < 0) {
        Py_DECREF(dict);
        return NULL;
    }
    return dict;
}

/* --- scan(body, view_type, max_attributes, max_value_bytes, weight_of) -> list | None ------ */

/* The view type's slots, found once per type: see spanscan.ScannedSpanView. */
enum {
    SLOT_NAME,
    SLOT_KIND,
    SLOT_START,
    SLOT_END,
    SLOT_STATUS,
    SLOT_RESOURCE,
    SLOT_SERVICE,
    SLOT_WEIGHT,
    SLOT_BODY,
    SLOT_SPAN_START,
    SLOT_SPAN_END,
    SLOT_CACHE,
    SLOT_COUNT
};
static const char *const slot_names[SLOT_COUNT] = {
    "name", "kind", "start_ns", "end_ns", "status_code", "resource", "service_name", "weight",
    "_body", "_span_start", "_span_end", "_decoded",
};
/* The names as interned str, made once: a str built per lookup would be kept, and replaced, in
 * CPython's type attribute cache at every call that looks the slots up. */
static PyObject *slot_name_objects[SLOT_COUNT];

typedef struct {
    PyTypeObject *type;
    Py_ssize_t offsets[SLOT_COUNT];
} view_layout;

/* The last view type scan() was given and its offsets (holds a strong reference to the type). A
 * call copies it into its own scan_state: Python code can run in the middle of a scan (weight_of,
 * a finalizer the garbage collector calls, another thread while that code runs) and may scan with
 * another view type, which replaces this cache; the call in progress keeps the offsets it checked. */
static view_layout layout;
static PyObject *unknown_service; /* "unknown_service" */
static PyObject *service_name_key; /* "service.name" */
static PyObject *one; /* 1.0 */
static destructor class_statement_dealloc; /* the tp_dealloc of every type a class statement makes */

/* 1 when an instance of `type` is `object` plus the slots of classes written in Python, so that
 * tp_alloc's zeroed memory is a complete instance: no base written in C (dict, a C extension's
 * type) whose own state its tp_new or __init__ would have set, and that would crash when used
 * without it. */
static int
is_plain_python_class(PyTypeObject *type)
{
    for (PyTypeObject *t = type; t != &PyBaseObject_Type; t = t->tp_base) {
        if (t == NULL || !(t->tp_flags & Py_TPFLAGS_HEAPTYPE) || t->tp_dealloc != class_statement_dealloc
            || t->tp_itemsize != 0) {
            return 0;
        }
    }
    return 1;
}

/* The offset of slot `name` in instances of `type`, or -1 with TypeError set. The descriptor must
 * be a member of `type` or of one of its bases: any member descriptor can be assigned to any class
 * attribute, and one taken from an unrelated class has an offset in that class's layout, perhaps
 * past the end of this one's instances. `writable` asks for a slot scan() may set. */
static Py_ssize_t
slot_offset(PyTypeObject *type, PyObject *descr, const char *name, int writable)
{
    if (descr == NULL || !Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
        PyErr_Format(PyExc_TypeError, "%s is not a slot of %s", name, type->tp_name);
        return -1;
    }
    PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
    PyTypeObject *owner = PyDescr_TYPE(descr);
    if (owner == NULL || !PyType_IsSubtype(type, owner) || member->type != T_OBJECT_EX
        || (writable && (member->flags & READONLY)) || member->offset < (Py_ssize_t)sizeof(PyObject)
        || member->offset > type->tp_basicsize - (Py_ssize_t)sizeof(PyObject *)) {
        PyErr_Format(PyExc_TypeError, "%s of %s is not a plain object slot of that class", name, type->tp_name);
        return -1;
    }
    return member->offset;
}

/* The slot offsets of view class `type` into *out (the caller's copy), from the cache or found and
 * then cached; 0, or -1 with an exception set. */
static int
find_layout(PyTypeObject *type, view_layout *out)
{
    if (layout.type == type) {
        *out = layout;
        return 0;
    }
    if (!is_plain_python_class(type) || type->tp_dictoffset != 0) {
        PyErr_SetString(PyExc_TypeError,
                        "scan() needs a view class written in Python over object, with __slots__ and no __dict__");
        return -1;
    }
    view_layout found;
    found.type = type;
    for (int i = 0; i < SLOT_COUNT; i++) {
        PyObject *descr = PyObject_GetAttr((PyObject *)type, slot_name_objects[i]);
        if (descr == NULL) {
            return -1;
        }
        found.offsets[i] = slot_offset(type, descr, slot_names[i], 1);
        Py_DECREF(descr);
        if (found.offsets[i] < 0) {
            return -1;
        }
    }
    /* the caller's copy and the cache are set before the old type is released: its deallocation
     * may run Python code, which may scan with yet another class */
    *out = found;
    PyTypeObject *old = layout.type;
    layout = found;
    layout.type = (PyTypeObject *)Py_NewRef(type);
    Py_XDECREF(old);
    return 0;
}

static inline void
set_slot(const view_layout *lay, PyObject *obj, int slot, PyObject *value) /* steals value */
{
    PyObject **where = (PyObject **)((char *)obj + lay->offsets[slot]);
    PyObject *old = *where;
    *where = value;
    Py_XDECREF(old);
}

typedef struct {
    view_layout layout; /* this call's own copy; layout.type is the caller's (borrowed) */
    PyObject *body; /* the bytes object */
    const uint8_t *base;
    size_t max_attributes;
    size_t limit;
    int check_lengths; /* the body is longer than limit: a value could be too */
    PyObject *weight_of;
    int weight_of_failed; /* its exception is the caller's, whatever its type */
    PyObject *views; /* list */
} scan_state;

static int
all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i]) {
            return 0;
        }
    }
    return 1;
}

/* Span fields: trace_id 1, span_id 2, trace_state 3, parent_span_id 4, name 5, kind 6 (enum),
 * start 7 and end 8 (fixed64), attributes 9, status 15 (Status: code 3, an enum). */
static int
scan_span(scan_state *st, const uint8_t *p, const uint8_t *end, PyObject *resource, PyObject *service)
{
    field_t f;
    int r;
    const uint8_t *span_start = p;
    size_t trace_len = 0, span_len = 0, parent_len = 0, name_len = 0, state_len = 0, attributes = 0;
    const uint8_t *trace_id = NULL, *span_id = NULL, *name = NULL, *state = NULL;
    uint64_t start = 0, stop = 0;
    int32_t kind = 0, status = 0;
    while ((r = next_field(&p, end, &f)) == 1) {
        switch (f.number) {
        case 1:
        case 2:
        case 3:
        case 4:
        case 5:
            if (f.wire != 2) {
                return SCAN_BAIL;
            }
            if (f.number == 1) {
                trace_id = f.data;
                trace_len = f.len;
            }
            else if (f.number == 2) {
                span_id = f.data;
                span_len = f.len;
            }
            else if (f.number == 3) {
                state = f.data;
                state_len = f.len;
            }
            else if (f.number == 4) {
                parent_len = f.len;
            }
            else {
                name = f.data;
                name_len = f.len;
            }
            break;
        case 6:
            if (f.wire != 0) {
                return SCAN_BAIL;
            }
            kind = (int32_t)(uint32_t)f.value;
            break;
        case 7:
        case 8:
            if (f.wire != 1) {
                return SCAN_BAIL;
            }
            if (f.number == 7) {
                start = f.value;
            }
            else {
                stop = f.value;
            }
            break;
        case 9: {
            if (f.wire != 2 || ++attributes > st->max_attributes) {
                return SCAN_BAIL;
            }
            /* the length rule, as the Python path applies it: only a body longer than the limit
             * can hold a longer value (the encoding itself is checked when attributes are read) */
            if (st->check_lengths) {
                int c = check_kv(f.data, f.data + f.len, st->limit, 1);
                if (c != SCAN_OK) {
                    return c;
                }
            }
            break;
        }
        case 15: {
            /* Status; a second occurrence merges into the first: later fields win, as here */
            if (f.wire != 2) {
                return SCAN_BAIL;
            }
            const uint8_t *q = f.data, *qend = f.data + f.len;
            field_t g;
            int rs;
            while ((rs = next_field(&q, qend, &g)) == 1) {
                if (g.number == 3) {
                    if (g.wire != 0) {
                        return SCAN_BAIL;
                    }
                    status = (int32_t)(uint32_t)g.value;
                }
            }
            if (rs < 0) {
                return SCAN_BAIL;
            }
            break;
        }
        default:
            break;
        }
    }
    if (r < 0) {
        return SCAN_BAIL;
    }
    /* validation.py's rules, in its order; any rule broken leaves naming it to the Python path */
    if (trace_len != 16 || all_zero(trace_id, 16) || span_len != 8 || all_zero(span_id, 8)
        || (parent_len != 0 && parent_len != 8) || stop < start) {
        return SCAN_BAIL;
    }

    const view_layout *lay = &st->layout;
    PyObject *view = lay->type->tp_alloc(lay->type, 0);
    if (view == NULL) {
        return SCAN_ERROR;
    }
    /* In the list before its slots are set (the garbage collector visits a view's slots only when
     * they are set); and this function keeps its own reference until the last one is: Python code
     * (weight_of, a finalizer) can reach the list through the garbage collector and drop it. */
    if (PyList_Append(st->views, view) < 0) {
        goto error;
    }
    set_slot(lay, view, SLOT_RESOURCE, Py_NewRef(resource));
    set_slot(lay, view, SLOT_SERVICE, Py_NewRef(service));
    set_slot(lay, view, SLOT_BODY, Py_NewRef(st->body));
    set_slot(lay, view, SLOT_CACHE, Py_NewRef(Py_None));
    PyObject *value;
    if ((value = PyLong_FromLong(kind)) == NULL) {
        goto error;
    }
    set_slot(lay, view, SLOT_KIND, value);
    if ((value = PyLong_FromLong(status)) == NULL) {
        goto error;
    }
    set_slot(lay, view, SLOT_STATUS, value);
    if ((value = PyLong_FromUnsignedLongLong(start)) == NULL) {
        goto error;
    }
    set_slot(lay, view, SLOT_START, value);
    if ((value = PyLong_FromUnsignedLongLong(stop)) == NULL) {
        goto error;
    }
    set_slot(lay, view, SLOT_END, value);
    if ((value = PyLong_FromSsize_t(span_start - st->base)) == NULL) {
        goto error;
    }
    set_slot(lay, view, SLOT_SPAN_START, value);
    if ((value = PyLong_FromSsize_t(end - st->base)) == NULL) {
        goto error;
    }
    set_slot(lay, view, SLOT_SPAN_END, value);
    if ((value = decode_text(name ? name : (const uint8_t *)"", name_len)) == NULL) {
        goto error;
    }
    set_slot(lay, view, SLOT_NAME, value);
    if (state_len == 0) {
        value = Py_NewRef(one);
    }
    else {
        PyObject *text = PyUnicode_DecodeUTF8((const char *)state, (Py_ssize_t)state_len, NULL);
        if (text == NULL) {
            goto error;
        }
        value = PyObject_CallOneArg(st->weight_of, text);
        Py_DECREF(text);
        if (value == NULL) {
            st->weight_of_failed = 1;
            goto error;
        }
    }
    set_slot(lay, view, SLOT_WEIGHT, value);
    Py_DECREF(view);
    return SCAN_OK;
error:
    Py_DECREF(view);
    return SCAN_ERROR;
}

/* ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; }
 * Resource { repeated KeyValue attributes = 1; }  ScopeSpans { repeated Span spans = 2; } */
static int
scan_resource_spans(scan_state *st, const uint8_t *p, const uint8_t *end)
{
    field_t f;
    int r;
    size_t attributes = 0;
    PyObject *resource = PyDict_New();
    if (resource == NULL) {
        return SCAN_ERROR;
    }
    /* First the resource (it may follow its spans; several occurrences merge: attributes append) */
    const uint8_t *q = p;
    while ((r = next_field(&q, end, &f)) == 1) {
        if (f.number != 1) {
            continue;
        }
        if (f.wire != 2) {
            goto bail;
        }
        const uint8_t *a = f.data, *aend = f.data + f.len;
        field_t g;
        int ra;
        while ((ra = next_field(&a, aend, &g)) == 1) {
            if (g.number != 1) {
                continue;
            }
            if (g.wire != 2 || ++attributes > st->max_attributes) {
                goto bail;
            }
            int c = check_kv(g.data, g.data + g.len, st->limit, 1);
            if (c != SCAN_OK) {
                Py_DECREF(resource);
                return c;
            }
            if (decode_kv_into(resource, g.data, g.data + g.len, 1) < 0) {
                goto error;
            }
        }
        if (ra < 0) {
            goto bail;
        }
    }
    if (r < 0) {
        goto bail;
    }
    PyObject *service = PyDict_GetItemWithError(resource, service_name_key); /* borrowed */
    if (service == NULL && PyErr_Occurred()) {
        goto error;
    }
    if (service == NULL || !PyUnicode_Check(service) || PyUnicode_GET_LENGTH(service) == 0) {
        service = unknown_service;
    }
    Py_INCREF(service);
    while ((r = next_field(&p, end, &f)) == 1) {
        if (f.number != 2) {
            continue;
        }
        if (f.wire != 2) {
            r = -1;
            break;
        }
        const uint8_t *s = f.data, *send = f.data + f.len;
        field_t g;
        int rs;
        while ((rs = next_field(&s, send, &g)) == 1) {
            if (g.number != 2) {
                continue;
            }
            if (g.wire != 2) {
                rs = -1;
                break;
            }
            int c = scan_span(st, g.data, g.data + g.len, resource, service);
            if (c != SCAN_OK) {
                Py_DECREF(service);
                Py_DECREF(resource);
                return c;
            }
        }
        if (rs < 0) {
            r = -1;
            break;
        }
    }
    Py_DECREF(service);
    Py_DECREF(resource);
    return r < 0 ? SCAN_BAIL : SCAN_OK;
bail:
    Py_DECREF(resource);
    return SCAN_BAIL;
error:
    Py_DECREF(resource);
    return SCAN_ERROR;
}

static PyObject *
scan(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5 || !PyBytes_Check(args[0]) || !PyType_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError,
                        "scan(body: bytes, view_type: type, max_attributes: int, max_value_bytes: int, "
                        "weight_of: callable)");
        return NULL;
    }
    Py_ssize_t max_attributes = PyLong_AsSsize_t(args[2]);
    Py_ssize_t limit = PyLong_AsSsize_t(args[3]);
    if ((max_attributes == -1 || limit == -1) && PyErr_Occurred()) {
        return NULL;
    }
    if (max_attributes < 0 || limit < 0) {
        PyErr_SetString(PyExc_ValueError, "limits must not be negative");
        return NULL;
    }
    scan_state st;
    if (find_layout((PyTypeObject *)args[1], &st.layout) < 0) { /* the caller holds the type */
        return NULL;
    }
    st.body = args[0];
    st.base = (const uint8_t *)PyBytes_AS_STRING(args[0]);
    st.max_attributes = (size_t)max_attributes;
    st.limit = (size_t)limit;
    st.check_lengths = PyBytes_GET_SIZE(args[0]) > limit;
    st.weight_of = args[4];
    st.weight_of_failed = 0;
    st.views = PyList_New(0);
    if (st.views == NULL) {
        return NULL;
    }
    const uint8_t *p = st.base, *end = st.base + PyBytes_GET_SIZE(args[0]);
    field_t f;
    int r, c = SCAN_OK;
    /* ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; } */
    while ((r = next_field(&p, end, &f)) == 1) {
        if (f.number != 1) {
            continue;
        }
        if (f.wire != 2) {
            r = -1;
            break;
        }
        c = scan_resource_spans(&st, f.data, f.data + f.len);
        if (c != SCAN_OK) {
            break;
        }
    }
    if (c == SCAN_ERROR) {
        Py_DECREF(st.views);
        if (st.weight_of_failed || !PyErr_ExceptionMatches(PyExc_ValueError)) {
            return NULL; /* an error of weight_of (a ValueError included), or memory */
        }
        /* text that is not UTF-8, or a malformed value: bytes upb would refuse, so not ours */
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    if (c == SCAN_BAIL || r < 0) {
        Py_DECREF(st.views);
        Py_RETURN_NONE;
    }
    return st.views;
}


/* --- bucket_durations(views, base_type, bounds) -> (groups, weighted) | None ----------------- */

/* RED's batch update (red.RedSpanProcessor.observe_batch): the views whose weight is 1 grouped per
 * (service_name, name, kind, status_code), each group being what HistogramFamily.record_many would
 * add to its series from the group's durations in seconds (red._group_in_python's lists, the
 * reference): ({bucket index: count}, n, sum, min, max), with no float object, list or Python
 * loop per span (HistogramFamily.record_bucketed merges it); and apart the views whose weight is
 * not 1. It reads the slots SpanView declares, at the offsets every subclass shares; None when a
 * view is not a SpanView or has an unset slot, or a duration is not a float (red.py then runs its
 * Python loop). */
enum { BASE_NAME, BASE_KIND, BASE_START, BASE_END, BASE_STATUS, BASE_SERVICE, BASE_WEIGHT, BASE_COUNT };
static const char *const base_names[BASE_COUNT] = {
    "name", "kind", "start_ns", "end_ns", "status_code", "service_name", "weight",
};
static PyObject *base_name_objects[BASE_COUNT]; /* interned, as slot_name_objects */
/* The last base type bucket_durations was given and its offsets (a strong reference to the type);
 * each call copies the offsets, as scan() does its layout, since Python code may run during a call
 * (a weight's __eq__, a name's __hash__, a finalizer) and group with another base type. */
static PyTypeObject *base_type;
static Py_ssize_t base_offsets[BASE_COUNT];

/* As find_layout: the offsets of base class `type` into `offsets` (the caller's copy). */
static int
find_base_layout(PyTypeObject *type, Py_ssize_t offsets[BASE_COUNT])
{
    if (base_type != type) {
        Py_ssize_t found[BASE_COUNT];
        for (int i = 0; i < BASE_COUNT; i++) {
            /* an attribute lookup, not tp_dict: that is NULL for builtin types on Python 3.12+ */
            PyObject *descr = PyObject_GetAttr((PyObject *)type, base_name_objects[i]);
            if (descr == NULL) {
                if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
                    return -1;
                }
                PyErr_Clear();
            }
            found[i] = slot_offset(type, descr, base_names[i], 0);
            Py_XDECREF(descr);
            if (found[i] < 0) {
                return -1;
            }
        }
        memcpy(offsets, found, sizeof found);
        PyTypeObject *old = base_type;
        base_type = (PyTypeObject *)Py_NewRef(type);
        memcpy(base_offsets, found, sizeof found);
        Py_XDECREF(old); /* last: may run Python code (see find_layout) */
        return 0;
    }
    memcpy(offsets, base_offsets, sizeof base_offsets);
    return 0;
}

/* 1 when weight == 1, 0 when not, -1 on error */
static int
weight_is_one(PyObject *weight)
{
    if (PyFloat_CheckExact(weight)) {
        return PyFloat_AS_DOUBLE(weight) == 1.0;
    }
    PyObject *int_one = PyLong_FromLong(1);
    if (int_one == NULL) {
        return -1;
    }
    Py_INCREF(weight); /* its __eq__ may unbind it from the view */
    int equal = PyObject_RichCompareBool(weight, int_one, Py_EQ);
    Py_DECREF(weight);
    Py_DECREF(int_one);
    return equal;
}

/* end - start as exact 64-bit ints: 1 and *seconds = elapsed / 1e9 if elapsed > 0 else 0.0, or 0
 * when either is not an int of 64 signed bits. e - s is exact in 64 unsigned bits when e > s, and
 * its conversion to double rounds as Python's int-to-float conversion does. */
static int
duration_fast(PyObject *start, PyObject *end, double *seconds)
{
    if (!PyLong_CheckExact(start) || !PyLong_CheckExact(end)) {
        return 0;
    }
    int start_over, end_over;
    long long s = PyLong_AsLongLongAndOverflow(start, &start_over);
    long long e = PyLong_AsLongLongAndOverflow(end, &end_over);
    if (start_over || end_over) {
        return 0;
    }
    *seconds = e > s ? (double)((unsigned long long)e - (unsigned long long)s) / 1e9 : 0.0;
    return 1;
}

/* elapsed / 1e9 if elapsed > 0 else 0.0, with elapsed = end - start, as Python computes it */
static PyObject *
duration_s(PyObject *start, PyObject *end)
{
    double seconds;
    if (duration_fast(start, end, &seconds)) {
        return PyFloat_FromDouble(seconds);
    }
    Py_INCREF(start); /* held: their methods may unbind them from the view */
    Py_INCREF(end);
    PyObject *elapsed = PyNumber_Subtract(end, start);
    Py_DECREF(start);
    Py_DECREF(end);
    if (elapsed == NULL) {
        return NULL;
    }
    PyObject *zero = PyLong_FromLong(0);
    int positive = zero == NULL ? -1 : PyObject_RichCompareBool(elapsed, zero, Py_GT);
    Py_XDECREF(zero);
    PyObject *result = NULL;
    if (positive > 0) {
        PyObject *billion = PyFloat_FromDouble(1e9);
        if (billion != NULL) {
            result = PyNumber_TrueDivide(elapsed, billion);
            Py_DECREF(billion);
        }
    }
    else if (positive == 0) {
        result = PyFloat_FromDouble(0.0);
    }
    Py_DECREF(elapsed);
    return result;
}

static inline PyObject *
slot_at(PyObject *view, Py_ssize_t offset) /* borrowed, may be NULL */
{
    return *(PyObject **)((char *)view + offset);
}

/* One group: what record_many computes from the group's list of values. */
typedef struct {
    PyObject *key; /* strong */
    Py_ssize_t n; /* values counted; a NaN (only Python arithmetic can give one) is not, as there */
    double hi, lo; /* their sum as sum() adds them: lo is the compensation of Python 3.12+ */
    double low, high; /* min() and max(): the first of equal values, as they keep */
} value_group;

/* A front cache of the groups dict by identity: the key's four objects -> the group's index. The
 * scanner's views share one str per text and small ints are singletons, so almost every view finds
 * its group here without building, hashing and comparing a key tuple. Only exact str and int: their
 * hash and equality cannot run Python code, so objects identical to a key's are in the group the
 * dict would give them. Each entry holds its objects, so no address is reused during the call. */
typedef struct {
    PyObject *items[4]; /* strong; items[0] == NULL: empty */
    Py_ssize_t index;
} identity_entry;

typedef struct {
    PyObject *groups; /* dict: key -> index into `stats` */
    PyObject *weighted; /* list */
    Py_ssize_t offsets[BASE_COUNT];
    double *bounds; /* a copy: a list given may change while Python code runs */
    Py_ssize_t bucket_count; /* len(bounds) + 1 */
    value_group *stats;
    Py_ssize_t *counts; /* bucket_count per group */
    Py_ssize_t used, allocated;
    identity_entry *identities; /* a power of two of them, at most half used */
    size_t identity_mask, identity_used;
} grouping;

/* bisect.bisect_left(bounds, value), step for step (so even unsorted bounds give its answer) */
static inline Py_ssize_t
bucket_of(const grouping *g, double value)
{
    size_t lo = 0, hi = (size_t)g->bucket_count - 1;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (g->bounds[mid] < value) {
            lo = mid + 1;
        }
        else {
            hi = mid;
        }
    }
    return (Py_ssize_t)lo;
}

static inline size_t
identity_hash(PyObject *const items[4])
{
    size_t h = 0;
    for (int k = 0; k < 4; k++) {
        h = (h ^ ((uintptr_t)items[k] >> 4)) * (size_t)0x9E3779B97F4A7C15ULL;
    }
    return h ^ (h >> 29);
}

/* The slot of `items` in the table: its entry, or the empty one where it would go. */
static identity_entry *
identity_slot(const grouping *g, PyObject *const items[4])
{
    size_t i = identity_hash(items) & g->identity_mask;
    for (;; i = (i + 1) & g->identity_mask) {
        identity_entry *e = &g->identities[i];
        if (e->items[0] == NULL || (e->items[0] == items[0] && e->items[1] == items[1]
                                    && e->items[2] == items[2] && e->items[3] == items[3])) {
            return e;
        }
    }
}

/* Remember that `items` (exact str, str, int, int) are in group `index`; 0, or -1 on error. */
static int
identity_add(grouping *g, PyObject *const items[4], Py_ssize_t index)
{
    if (g->identities == NULL || 2 * (g->identity_used + 1) > g->identity_mask + 1) {
        identity_entry *old = g->identities;
        size_t old_size = old == NULL ? 0 : g->identity_mask + 1, size = old == NULL ? 64 : 2 * old_size;
        if (size > PY_SSIZE_T_MAX / sizeof(identity_entry)) {
            PyErr_NoMemory();
            return -1;
        }
        g->identities = PyMem_Calloc(size, sizeof(identity_entry));
        if (g->identities == NULL) {
            g->identities = old;
            PyErr_NoMemory();
            return -1;
        }
        g->identity_mask = size - 1;
        for (size_t i = 0; i < old_size; i++) {
            if (old[i].items[0] != NULL) {
                *identity_slot(g, old[i].items) = old[i];
            }
        }
        PyMem_Free(old);
    }
    identity_entry *e = identity_slot(g, items);
    if (e->items[0] == NULL) {
        for (int k = 0; k < 4; k++) {
            e->items[k] = Py_NewRef(items[k]);
        }
        e->index = index;
        g->identity_used++;
    }
    return 0;
}

/* A new group for `key` at index g->used, registered in g->groups; its index, or -1 on error. */
static Py_ssize_t
new_group(grouping *g, PyObject *key)
{
    if (g->used == g->allocated) {
        Py_ssize_t allocated = g->allocated ? 2 * g->allocated : 16;
        if ((size_t)allocated > PY_SSIZE_T_MAX / sizeof(Py_ssize_t) / (size_t)g->bucket_count) {
            PyErr_NoMemory();
            return -1;
        }
        value_group *stats = PyMem_Realloc(g->stats, (size_t)allocated * sizeof *stats);
        if (stats == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        g->stats = stats;
        Py_ssize_t *counts = PyMem_Realloc(g->counts, (size_t)allocated * (size_t)g->bucket_count * sizeof *counts);
        if (counts == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        g->counts = counts;
        g->allocated = allocated;
    }
    Py_ssize_t index = g->used;
    PyObject *number = PyLong_FromSsize_t(index);
    if (number == NULL) {
        return -1;
    }
    int rc = PyDict_SetItem(g->groups, key, number); /* may run the key's __eq__ */
    Py_DECREF(number);
    if (rc < 0) {
        return -1;
    }
    value_group *stats = &g->stats[index];
    stats->key = Py_NewRef(key);
    stats->n = 0;
    stats->hi = stats->lo = stats->low = stats->high = 0.0;
    memset(&g->counts[index * g->bucket_count], 0, (size_t)g->bucket_count * sizeof *g->counts);
    g->used = index + 1;
    return index;
}

/* The index of the group of the key made of `items`, made when new; or -1 with an exception set. */
static Py_ssize_t
group_of(grouping *g, PyObject *const items[4])
{
    int cacheable = PyUnicode_CheckExact(items[0]) && PyUnicode_CheckExact(items[1]) && PyLong_CheckExact(items[2])
                    && PyLong_CheckExact(items[3]);
    if (cacheable && g->identities != NULL) {
        identity_entry *e = identity_slot(g, items);
        if (e->items[0] != NULL) {
            return e->index;
        }
    }
    for (int k = 0; k < 4; k++) { /* held: allocating the key may run code (a collection) */
        Py_INCREF(items[k]);
    }
    PyObject *key = PyTuple_New(4);
    if (key == NULL) {
        for (int k = 0; k < 4; k++) {
            Py_DECREF(items[k]);
        }
        return -1;
    }
    for (int k = 0; k < 4; k++) {
        PyTuple_SET_ITEM(key, k, items[k]); /* takes the reference taken above */
    }
    Py_ssize_t index;
    PyObject *found = PyDict_GetItemWithError(g->groups, key); /* borrowed */
    if (found != NULL) {
        /* Python code can reach the dict through the garbage collector and put anything in it */
        index = PyLong_CheckExact(found) ? PyLong_AsSsize_t(found) : -1;
        if (index < 0 || index >= g->used) {
            PyErr_Clear();
            PyErr_SetString(PyExc_RuntimeError, "bucket_durations' groups changed during the call");
            index = -1;
        }
    }
    else if (PyErr_Occurred()) { /* an unhashable name, say */
        index = -1;
    }
    else {
        index = new_group(g, key);
    }
    if (index >= 0 && cacheable && identity_add(g, items, index) < 0) {
        index = -1;
    }
    Py_DECREF(key);
    return index;
}

/* What record_many adds for `value`: its bucket, and the count, sum, min and max. */
static inline void
add_value(grouping *g, Py_ssize_t index, double value)
{
    if (value != value) {
        return;
    }
    value_group *stats = &g->stats[index];
    g->counts[index * g->bucket_count + bucket_of(g, value)]++;
    if (stats->n++ == 0) {
        stats->hi = 0.0 + value; /* sum()'s start is the int 0 */
        stats->low = stats->high = value;
        return;
    }
#if PY_VERSION_HEX >= 0x030C0000
    /* sum() of floats since Python 3.12: Neumaier's compensated summation */
    double t = stats->hi + value;
    if (fabs(stats->hi) >= fabs(value)) {
        stats->lo += (stats->hi - t) + value;
    }
    else {
        stats->lo += (value - t) + stats->hi;
    }
    stats->hi = t;
#else
    stats->hi += value;
#endif
    if (value < stats->low) {
        stats->low = value;
    }
    if (value > stats->high) {
        stats->high = value;
    }
}

static double
group_sum(const value_group *stats)
{
#if PY_VERSION_HEX >= 0x030C0000
    /* as sum() ends: no sign lost on a zero, no NaN from an infinite sum */
    if (stats->lo != 0.0 && isfinite(stats->lo)) {
        return stats->hi + stats->lo;
    }
#endif
    return stats->hi;
}

/* The answer: {key: ({bucket index: count}, n, sum, min, max)} in the order the groups were first
 * seen (the order in which record_many would have made their series). */
static PyObject *
bucketed_groups(const grouping *g)
{
    PyObject *out = PyDict_New();
    if (out == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < g->used; i++) {
        const value_group *stats = &g->stats[i];
        if (stats->n == 0) {
            continue; /* only NaN values: record_many makes no series */
        }
        PyObject *counts = PyDict_New();
        if (counts == NULL) {
            goto error;
        }
        const Py_ssize_t *row = &g->counts[i * g->bucket_count];
        for (Py_ssize_t b = 0; b < g->bucket_count; b++) {
            if (row[b] == 0) {
                continue;
            }
            PyObject *bucket = PyLong_FromSsize_t(b);
            PyObject *count = PyLong_FromSsize_t(row[b]);
            int rc = bucket == NULL || count == NULL ? -1 : PyDict_SetItem(counts, bucket, count);
            Py_XDECREF(bucket);
            Py_XDECREF(count);
            if (rc < 0) {
                Py_DECREF(counts);
                goto error;
            }
        }
        PyObject *group = Py_BuildValue("(Nnddd)", counts, stats->n, group_sum(stats), stats->low, stats->high);
        if (group == NULL) {
            goto error;
        }
        int rc = PyDict_SetItem(out, stats->key, group);
        Py_DECREF(group);
        if (rc < 0) {
            goto error;
        }
    }
    return out;
error:
    Py_DECREF(out);
    return NULL;
}

/* One view into its group or weighted: 1, 0 when a slot is unset or a duration is not a float, or
 * -1 with an exception set. Python code can run from here (a weight's __eq__, arithmetic on int
 * subclasses, the hash of a name, a finalizer the garbage collector calls when the key is
 * allocated) and rebind the view's slots: each slot is read when it is used, as the Python loop
 * reads them, with no Python code between the read and the use or the new reference taken. */
static int
group_one(grouping *g, PyObject *view)
{
    static const int key_slots[4] = {BASE_SERVICE, BASE_NAME, BASE_KIND, BASE_STATUS};
    const Py_ssize_t *offsets = g->offsets;
    PyObject *weight = slot_at(view, offsets[BASE_WEIGHT]);
    if (weight == NULL) {
        return 0;
    }
    int one_weight = weight_is_one(weight);
    if (one_weight <= 0) {
        return one_weight < 0 || PyList_Append(g->weighted, view) < 0 ? -1 : 1;
    }
    PyObject *start = slot_at(view, offsets[BASE_START]), *end = slot_at(view, offsets[BASE_END]);
    if (start == NULL || end == NULL) {
        return 0;
    }
    double seconds;
    if (!duration_fast(start, end, &seconds)) {
        PyObject *duration = duration_s(start, end);
        if (duration == NULL) {
            return -1;
        }
        int is_float = PyFloat_CheckExact(duration); /* else record_many would bisect and add it */
        seconds = is_float ? PyFloat_AS_DOUBLE(duration) : 0.0;
        Py_DECREF(duration);
        if (!is_float) {
            return 0;
        }
    }
    PyObject *items[4];
    for (int k = 0; k < 4; k++) {
        if ((items[k] = slot_at(view, offsets[key_slots[k]])) == NULL) {
            return 0;
        }
    }
    Py_ssize_t index = group_of(g, items);
    if (index < 0) {
        return -1;
    }
    add_value(g, index, seconds);
    return 1;
}

/* The bounds as doubles into g (bounds must be exact floats, as HistogramFamily keeps them: a
 * float subclass could compare in its own way); 0, or -1 with an exception set. */
static int
copy_bounds(grouping *g, PyObject *bounds)
{
    PyObject *seq = PySequence_Fast(bounds, "bounds must be a sequence of floats");
    if (seq == NULL) {
        return -1;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    g->bounds = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(double));
    if (g->bounds == NULL) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *bound = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyFloat_CheckExact(bound)) {
            Py_DECREF(seq);
            PyErr_Format(PyExc_TypeError, "bounds must be floats, not %.100s", Py_TYPE(bound)->tp_name);
            return -1;
        }
        g->bounds[i] = PyFloat_AS_DOUBLE(bound);
    }
    g->bucket_count = n + 1;
    Py_DECREF(seq);
    return 0;
}

static PyObject *
bucket_durations(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyType_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError,
                        "bucket_durations(views: Sequence[SpanView], base_type: type, bounds: Sequence[float])");
        return NULL;
    }
    PyTypeObject *type = (PyTypeObject *)args[1]; /* the caller holds it */
    grouping g = {0};
    PyObject *result = NULL;
    if (find_base_layout(type, g.offsets) < 0 || copy_bounds(&g, args[2]) < 0) {
        PyMem_Free(g.bounds);
        return NULL;
    }
    PyObject *seq = PySequence_Fast(args[0], "views must be a sequence");
    if (seq == NULL) {
        PyMem_Free(g.bounds);
        return NULL;
    }
    g.groups = PyDict_New();
    g.weighted = PyList_New(0);
    if (g.groups == NULL || g.weighted == NULL) {
        goto done;
    }
    /* `views` may be the caller's list, and Python code run from here (see group_one) may change
     * it: the length is read again for every view, and the view is held while in use. */
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
        PyObject *view = PySequence_Fast_GET_ITEM(seq, i);
        int rc = 0;
        if (PyObject_TypeCheck(view, type)) {
            rc = 1;
            for (int k = 0; k < BASE_COUNT; k++) { /* every slot set, else the Python loop decides */
                if (slot_at(view, g.offsets[k]) == NULL) {
                    rc = 0;
                }
            }
        }
        if (rc) {
            Py_INCREF(view);
            rc = group_one(&g, view);
            Py_DECREF(view);
        }
        if (rc < 0) {
            goto done;
        }
        if (rc == 0) {
            result = Py_NewRef(Py_None);
            goto done;
        }
    }
    PyObject *bucketed = bucketed_groups(&g);
    if (bucketed != NULL) {
        result = PyTuple_Pack(2, bucketed, g.weighted);
        Py_DECREF(bucketed);
    }
done:
    Py_DECREF(seq);
    Py_XDECREF(g.groups);
    Py_XDECREF(g.weighted);
    for (Py_ssize_t i = 0; i < g.used; i++) {
        Py_DECREF(g.stats[i].key);
    }
    if (g.identities != NULL) {
        for (size_t i = 0; i <= g.identity_mask; i++) {
            for (int k = 0; k < 4; k++) {
                Py_XDECREF(g.identities[i].items[k]);
            }
        }
    }
    PyMem_Free(g.identities);
    PyMem_Free(g.stats);
    PyMem_Free(g.counts);
    PyMem_Free(g.bounds);
    return result;
}

static PyMethodDef methods[] = {
    {"scan", (PyCFunction)(void (*)(void))scan, METH_FASTCALL,
     "scan(body, view_type, max_attributes, max_value_bytes, weight_of) -> list of views, or None "
     "when the request needs the Python path (a rule broken, or an encoding it does not take)."},
    {"span_attributes", (PyCFunction)(void (*)(void))span_attributes, METH_FASTCALL,
     "span_attributes(body, start, end) -> dict of the attributes of the Span encoded at body[start:end], "
     "or None when protobuf would read them by merging (decode those with upb)."},
    {"bucket_durations", (PyCFunction)(void (*)(void))bucket_durations, METH_FASTCALL,
     "bucket_durations(views, base_type, bounds) -> ({(service, name, kind, status): ({bucket index: count}, n, "
     "sum, min, max)}, weighted views), or None when a view is not a base_type with every slot set, or a "
     "duration is not a float."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_native", "The span path's hot loops in C (see collector/spanscan.py and red.py).", -1,
    methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__native(void)
{
    unknown_service = PyUnicode_InternFromString("unknown_service");
    service_name_key = PyUnicode_InternFromString("service.name");
    one = PyFloat_FromDouble(1.0);
    /* type("_probe", (), {}): its tp_dealloc is the one every class statement's type has */
    PyObject *probe = PyObject_CallFunction((PyObject *)&PyType_Type, "s()N", "_probe", PyDict_New());
    if (unknown_service == NULL || service_name_key == NULL || one == NULL || probe == NULL) {
        Py_CLEAR(unknown_service);
        Py_CLEAR(service_name_key);
        Py_CLEAR(one);
        Py_XDECREF(probe);
        return NULL;
    }
    class_statement_dealloc = ((PyTypeObject *)probe)->tp_dealloc;
    Py_DECREF(probe);
    for (int i = 0; i < SLOT_COUNT; i++) {
        if ((slot_name_objects[i] = PyUnicode_InternFromString(slot_names[i])) == NULL) {
            return NULL;
        }
    }
    for (int i = 0; i < BASE_COUNT; i++) {
        if ((base_name_objects[i] = PyUnicode_InternFromString(base_names[i])) == NULL) {
            return NULL;
        }
    }
    return PyModule_Create(&module_def);
}
