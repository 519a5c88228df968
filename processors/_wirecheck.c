/*
 * spansignals.processors._wirecheck: is this body an OTLP ExportTraceServiceRequest that the
 * protobuf runtime (upb) accepts? Answered without building the message.
 *
 * Why by hand: the collector's fast span path (collector/spanscan.py) reads spans straight from
 * the received bytes, and upb's parse was kept in front of it only to decide acceptance: it was
 * ~19% of the instructions per request in process (callgrind, the benchmark's 512-span request),
 * for a message nothing then read. No protobuf library offers "validate without building", so this
 * module walks the wire format against the trace schema and checks what upb checks.
 *
 * The contract: trace_spans(body) is a number (of spans) only when upb would parse `body` as an
 * ExportTraceServiceRequest without error (well-formed wire format, every proto3 string valid
 * UTF-8, nesting within bounds). It is stricter than upb on purpose, and None then means "not
 * sure", never "invalid": the caller parses with upb, which decides. It answers None for
 *   - a field number the schema below does not declare (upb would keep it as an unknown field),
 *     and KeyValue.key_strindex / AnyValue.string_value_strindex (profile dictionary references,
 *     never sent with traces, which the span scanner does not read);
 *   - a declared field with another wire type than its declared one (upb: an unknown field);
 *   - group wire types, and non-canonical varints (an overlong encoding, or a tenth byte above 1);
 *   - nesting deeper than MAX_DEPTH.
 * The tests compare it with upb on generated and mutated bodies, and schema() against the
 * installed descriptors, so a changed proto cannot silently widen what this accepts.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MAX_DEPTH 32

enum { K_NONE, K_VARINT, K_FIXED64, K_FIXED32, K_BYTES, K_STRING, K_MESSAGE };
static const char *const kind_names[] = {"none", "varint", "fixed64", "fixed32", "bytes", "string", "message"};

enum {
    M_REQUEST,
    M_RESOURCE_SPANS,
    M_RESOURCE,
    M_KEY_VALUE,
    M_ANY_VALUE,
    M_ARRAY_VALUE,
    M_KEY_VALUE_LIST,
    M_ENTITY_REF,
    M_SCOPE_SPANS,
    M_SCOPE,
    M_SPAN,
    M_EVENT,
    M_LINK,
    M_STATUS,
    M_COUNT
};

#define MAX_FIELD 16
typedef struct {
    const char *name;
    uint8_t kind[MAX_FIELD + 1]; /* by field number; K_NONE: not accepted */
    uint8_t child[MAX_FIELD + 1]; /* the message type of a K_MESSAGE field */
} schema_t;

/* opentelemetry-proto's trace request (proto3). Left out on purpose: KeyValue.key_strindex (3)
 * and AnyValue.string_value_strindex (8), see above. */
static const schema_t schemas[M_COUNT] = {
    [M_REQUEST] = {"opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest",
                   {[1] = K_MESSAGE},
                   {[1] = M_RESOURCE_SPANS}},
    [M_RESOURCE_SPANS] = {"opentelemetry.proto.trace.v1.ResourceSpans",
                          {[1] = K_MESSAGE, [2] = K_MESSAGE, [3] = K_STRING},
                          {[1] = M_RESOURCE, [2] = M_SCOPE_SPANS}},
    [M_RESOURCE] = {"opentelemetry.proto.resource.v1.Resource",
                    {[1] = K_MESSAGE, [2] = K_VARINT, [3] = K_MESSAGE},
                    {[1] = M_KEY_VALUE, [3] = M_ENTITY_REF}},
    [M_KEY_VALUE] = {"opentelemetry.proto.common.v1.KeyValue",
                     {[1] = K_STRING, [2] = K_MESSAGE},
                     {[2] = M_ANY_VALUE}},
    [M_ANY_VALUE] = {"opentelemetry.proto.common.v1.AnyValue",
                     {[1] = K_STRING, [2] = K_VARINT, [3] = K_VARINT, [4] = K_FIXED64, [5] = K_MESSAGE,
                      [6] = K_MESSAGE, [7] = K_BYTES},
                     {[5] = M_ARRAY_VALUE, [6] = M_KEY_VALUE_LIST}},
    [M_ARRAY_VALUE] = {"opentelemetry.proto.common.v1.ArrayValue", {[1] = K_MESSAGE}, {[1] = M_ANY_VALUE}},
    [M_KEY_VALUE_LIST] = {"opentelemetry.proto.common.v1.KeyValueList", {[1] = K_MESSAGE}, {[1] = M_KEY_VALUE}},
    [M_ENTITY_REF] = {"opentelemetry.proto.common.v1.EntityRef",
                      {[1] = K_STRING, [2] = K_STRING, [3] = K_STRING, [4] = K_STRING},
                      {0}},
    [M_SCOPE_SPANS] = {"opentelemetry.proto.trace.v1.ScopeSpans",
                       {[1] = K_MESSAGE, [2] = K_MESSAGE, [3] = K_STRING},
                       {[1] = M_SCOPE, [2] = M_SPAN}},
    [M_SCOPE] = {"opentelemetry.proto.common.v1.InstrumentationScope",
                 {[1] = K_STRING, [2] = K_STRING, [3] = K_MESSAGE, [4] = K_VARINT},
                 {[3] = M_KEY_VALUE}},
    [M_SPAN] = {"opentelemetry.proto.trace.v1.Span",
                {[1] = K_BYTES, [2] = K_BYTES, [3] = K_STRING, [4] = K_BYTES, [5] = K_STRING, [6] = K_VARINT,
                 [7] = K_FIXED64, [8] = K_FIXED64, [9] = K_MESSAGE, [10] = K_VARINT, [11] = K_MESSAGE,
                 [12] = K_VARINT, [13] = K_MESSAGE, [14] = K_VARINT, [15] = K_MESSAGE, [16] = K_FIXED32},
                {[9] = M_KEY_VALUE, [11] = M_EVENT, [13] = M_LINK, [15] = M_STATUS}},
    [M_EVENT] = {"opentelemetry.proto.trace.v1.Span.Event",
                 {[1] = K_FIXED64, [2] = K_STRING, [3] = K_MESSAGE, [4] = K_VARINT},
                 {[3] = M_KEY_VALUE}},
    [M_LINK] = {"opentelemetry.proto.trace.v1.Span.Link",
                {[1] = K_BYTES, [2] = K_BYTES, [3] = K_STRING, [4] = K_MESSAGE, [5] = K_VARINT, [6] = K_FIXED32},
                {[4] = M_KEY_VALUE}},
    [M_STATUS] = {"opentelemetry.proto.trace.v1.Status", {[2] = K_STRING, [3] = K_VARINT}, {0}},
};

/* A canonical varint (no overlong encoding, at most ten bytes, a tenth byte of 0 or 1): its value
 * into *out and 1, else 0. Every protobuf encoder writes these; upb accepts more, which the caller
 * leaves to upb. */
static inline int
read_varint(const uint8_t **pp, const uint8_t *end, uint64_t *out)
{
    const uint8_t *p = *pp;
    if (p < end && *p < 0x80) {
        *out = *p;
        *pp = p + 1;
        return 1;
    }
    uint64_t value = 0;
    for (int i = 0; i < 10 && p < end; i++) {
        uint8_t byte = *p++;
        value |= (uint64_t)(byte & 0x7F) << (7 * i);
        if (!(byte & 0x80)) {
            if (byte == 0 || (i == 9 && byte > 1)) {
                return 0;
            }
            *pp = p;
            *out = value;
            return 1;
        }
    }
    return 0;
}

/* Strict UTF-8 as Unicode defines it (Table 3-7: no overlong forms, no surrogates, nothing past
 * U+10FFFF), which is what upb's utf8_range and Python's decoder accept. */
static int
utf8_valid(const uint8_t *p, size_t n)
{
    const uint8_t *end = p + n;
    while (p < end) {
        while (end - p >= 8) {
            uint64_t word;
            memcpy(&word, p, 8);
            if (word & 0x8080808080808080ULL) {
                break;
            }
            p += 8;
        }
        if (p >= end) {
            break;
        }
        uint8_t c = *p;
        if (c < 0x80) {
            p++;
        }
        else if (c < 0xC2) { /* a continuation byte, or an overlong two-byte form */
            return 0;
        }
        else if (c < 0xE0) {
            if (end - p < 2 || (p[1] & 0xC0) != 0x80) {
                return 0;
            }
            p += 2;
        }
        else if (c < 0xF0) {
            if (end - p < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (c == 0xE0 && p[1] < 0xA0)
                || (c == 0xED && p[1] > 0x9F)) {
                return 0;
            }
            p += 3;
        }
        else if (c < 0xF5) {
            if (end - p < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80
                || (c == 0xF0 && p[1] < 0x90) || (c == 0xF4 && p[1] > 0x8F)) {
                return 0;
            }
            p += 4;
        }
        else {
            return 0;
        }
    }
    return 1;
}

/* 1 when [p, end) is a message of `type` as the contract above accepts it, else 0; counts the
Span messages met into *spans. */
static int
check_message(const uint8_t *p, const uint8_t *end, int type, int depth, Py_ssize_t *spans)
{
    if (depth > MAX_DEPTH) {
        return 0;
    }
    const schema_t *schema = &schemas[type];
    while (p < end) {
        uint64_t tag, value;
        if (!read_varint(&p, end, &tag) || tag > UINT32_MAX) {
            return 0;
        }
        uint64_t number = tag >> 3;
        int wire = (int)(tag & 7);
        if (number == 0 || number > MAX_FIELD) {
            return 0;
        }
        switch (schema->kind[number]) {
        case K_VARINT:
            if (wire != 0 || !read_varint(&p, end, &value)) {
                return 0;
            }
            break;
        case K_FIXED64:
            if (wire != 1 || end - p < 8) {
                return 0;
            }
            p += 8;
            break;
        case K_FIXED32:
            if (wire != 5 || end - p < 4) {
                return 0;
            }
            p += 4;
            break;
        case K_BYTES:
        case K_STRING:
        case K_MESSAGE: {
            uint64_t length;
            if (wire != 2 || !read_varint(&p, end, &length) || length > (uint64_t)(end - p)) {
                return 0;
            }
            const uint8_t *data = p;
            p += length;
            if (schema->kind[number] == K_STRING) {
                if (!utf8_valid(data, (size_t)length)) {
                    return 0;
                }
            }
            else if (schema->kind[number] == K_MESSAGE) {
                int child = schema->child[number];
                if (!check_message(data, p, child, depth + 1, spans)) {
                    return 0;
                }
                if (child == M_SPAN) {
                    (*spans)++;
                }
            }
            break;
        }
        default:
            return 0;
        }
    }
    return 1;
}

/* The number of spans of `body` when the contract above accepts it, else -1 (-2: an error set). */
static Py_ssize_t
check_request(PyObject *body)
{
    Py_buffer view;
    if (PyObject_GetBuffer(body, &view, PyBUF_SIMPLE) < 0) {
        return -2;
    }
    const uint8_t *p = (const uint8_t *)view.buf;
    Py_ssize_t spans = 0;
    int ok = check_message(p, p + view.len, M_REQUEST, 0, &spans);
    PyBuffer_Release(&view);
    return ok ? spans : -1;
}

static PyObject *
trace_spans(PyObject *Py_UNUSED(module), PyObject *body)
{
    Py_ssize_t spans = check_request(body);
    if (spans == -2) {
        return NULL;
    }
    if (spans < 0) {
        Py_RETURN_NONE;
    }
    return PyLong_FromSsize_t(spans);
}

/* {message full name: {field number: kind}} with kind "string", "message:<full name>", ...: for
 * the test that compares this table with the installed descriptors. */
static PyObject *
schema(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    PyObject *out = PyDict_New();
    if (out == NULL) {
        return NULL;
    }
    for (int m = 0; m < M_COUNT; m++) {
        PyObject *fields = PyDict_New();
        if (fields == NULL || PyDict_SetItemString(out, schemas[m].name, fields) < 0) {
            Py_XDECREF(fields);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(fields); /* out holds it */
        for (int n = 1; n <= MAX_FIELD; n++) {
            int kind = schemas[m].kind[n];
            if (kind == K_NONE) {
                continue;
            }
            PyObject *number = PyLong_FromLong(n);
            PyObject *name = kind == K_MESSAGE
                                 ? PyUnicode_FromFormat("message:%s", schemas[schemas[m].child[n]].name)
                                 : PyUnicode_FromString(kind_names[kind]);
            int rc = number == NULL || name == NULL ? -1 : PyDict_SetItem(fields, number, name);
            Py_XDECREF(number);
            Py_XDECREF(name);
            if (rc < 0) {
                Py_DECREF(out);
                return NULL;
            }
        }
    }
    return out;
}

static PyMethodDef methods[] = {
    {"trace_spans", trace_spans, METH_O,
     "trace_spans(body) -> the number of spans when upb would accept body as an ExportTraceServiceRequest "
     "(a well-formed encoding of the known fields, valid UTF-8); None when not sure."},
    {"schema", schema, METH_NOARGS, "schema() -> {message name: {field number: kind}} this module accepts."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_wirecheck", "Acceptance of OTLP trace requests without building them.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__wirecheck(void)
{
    return PyModule_Create(&module_def);
}
