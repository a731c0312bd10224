# Included by _kernels.pyx (one extension, so the chain runner calls each
# kernel's C ``run`` directly).  Compiled twin of batch.py, which documents
# the rules; the two give the same ProcessedFrames (test_processing.py).
#
# How it is made fast: one pass finds every record's chain (two dict
# look-ups, no tuples), the records of each chain are gathered into C arrays
# by a counting sort, each chain runs its kernels' ``run`` over them without
# the GIL, and the outputs are scattered back by a second counting sort.
# Python objects are made only for what the processed frames hold.

from cpython.dict cimport PyDict_GetItem as _dict_get
from cpython.float cimport PyFloat_AS_DOUBLE as _float_value
from cpython.list cimport PyList_AsTuple as _list_as_tuple
from cpython.object cimport PyObject_GenericSetAttr
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize
from cpython.ref cimport PyObject as _PyObject
from libc.string cimport memcmp, memcpy, memset as _memset

from ..spine import KIND_DATA as _KIND_DATA, KIND_STATUS as _KIND_STATUS, ProcessedFrame as _ProcessedFrame

cdef unsigned char R_NODE_FAULT = _codes.NODE_FAULT
cdef unsigned char R_NO_COLD_JUNCTION = _codes.NO_COLD_JUNCTION
cdef tuple _REASON_NAMES = _codes.REASON_NAMES
cdef object _CT_SENML_OBJECT = 112
cdef str _CJ_SUFFIX = ".cj"


cdef inline bint _numeric_value(object value):
    return value is None or type(value) is float or type(value) is int


cdef inline double _as_double(object value) except? -1.0:
    if value is None:
        return NAN
    if type(value) is float:
        return _float_value(value)
    return <double> value  # an int (Python's float(int) rounding)


cdef double _cold_junction_of(object frame, Py_ssize_t index) except? -2.0:
    """batch._cold_junction: the frame's <channel>.cj reading at record
    ``index``'s time, NaN when there is none; -1e300 never occurs."""
    cdef list names = frame.names, times = frame.times, values = frame.values
    wanted = names[index] + _CJ_SUFFIX
    time = times[index]
    cdef Py_ssize_t k
    for k in range(len(names)):
        if names[k] == wanted and times[k] == time:
            value = values[k]
            if type(value) is float or type(value) is int:
                return <double> float(value)
            return NAN
    return NAN


cdef bint _has_cold_junction(object frame, Py_ssize_t index) except -1:
    cdef list names = frame.names, times = frame.times, values = frame.values
    wanted = names[index] + _CJ_SUFFIX
    time = times[index]
    cdef Py_ssize_t k
    for k in range(len(names)):
        if names[k] == wanted and times[k] == time:
            value = values[k]
            return type(value) is float or type(value) is int
    return False


cdef void _origins(const double* inputs, Py_ssize_t n, const double* outputs, Py_ssize_t count,
                   Py_ssize_t* found) noexcept nogil:
    """batch.origins: an output point's input sample by equal time (the
    last such input, as a dict keyed by time gives), else the first input at
    or after the next output's time, else the last input."""
    cdef Py_ssize_t k, j, i
    cdef double following
    for k in range(count):
        i = -1
        for j in range(n - 1, -1, -1):
            if inputs[j] == outputs[k]:
                i = j
                break
        if i < 0:
            i = n - 1
            if k + 1 < count:
                following = outputs[k + 1]
                for j in range(n):
                    if inputs[j] >= following:
                        i = j
                        break
        found[k] = i


def run_chain(chain, times, values, quality, reasons, cold_junction):
    """batch.run_chain: ``chain``'s kernels over the buffers in place (C
    calls to each kernel's ``run``); returns the points that survive."""
    cdef double[::1] t = times
    cdef double[::1] v = values
    cdef unsigned char[::1] q = quality
    cdef unsigned char[::1] r = reasons
    cdef double[::1] cj
    cdef Py_ssize_t n = v.shape[0]
    if t.shape[0] != n or q.shape[0] != n or r.shape[0] != n:
        raise ValueError("times, values, quality and reasons must have the same length")
    cdef const double* cj_pointer = NULL
    if cold_junction is not None:
        cj = cold_junction
        if cj.shape[0] != n:
            raise ValueError("cold_junction must have one temperature per sample")
        if n:
            cj_pointer = &cj[0]
    if n == 0:
        return 0
    return _run_kernels(chain, &t[0], &v[0], &q[0], &r[0], cj_pointer, n)


cdef Py_ssize_t _run_kernels(object chain, double* t, double* v, unsigned char* q, unsigned char* r,
                             const double* cj, Py_ssize_t n) except -1:
    cdef tuple kernels = chain.kernels
    cdef tuple per_sample = chain.per_sample_cj
    cdef Py_ssize_t k, count = len(kernels)
    cdef Kernel kernel
    for k in range(count):
        item = kernels[k]
        if not isinstance(item, Kernel):
            raise TypeError(f"{type(item).__name__} is not a compiled kernel; build the chain with the cython kernels")
        kernel = <Kernel> item
        if per_sample[k]:
            n = kernel.run(t, v, q, r, cj, n)
        else:
            n = kernel.run(t, v, q, r, NULL, n)
    return n


cdef class _Buffers:
    """The C arrays of one batch, freed together."""
    cdef Py_ssize_t* group_of     # per record: its group, or -1
    cdef Py_ssize_t* members      # record indexes, grouped by chain, commit order within
    cdef Py_ssize_t* group_start  # per group: its first entry in members (and in the sample arrays)
    cdef Py_ssize_t* group_kept   # per group: outputs its chain gave
    cdef double* times            # per member: the chain's buffers
    cdef double* values
    cdef unsigned char* quality
    cdef unsigned char* reasons
    cdef double* cold_junction
    cdef Py_ssize_t* sources      # per member slot: the member an output stands for
    cdef Py_ssize_t* stamp        # per output slot of a calibrated chain: the record entry applied, or -1
    cdef Py_ssize_t* out_first    # per record: its first output (prefix sums), size records + 1
    cdef Py_ssize_t* out_order    # outputs sorted by record: (group entry index)
    cdef Py_ssize_t* cursor

    def __cinit__(self, Py_ssize_t records, Py_ssize_t groups):
        cdef Py_ssize_t size = records if records else 1
        self.group_of = <Py_ssize_t*> PyMem_Malloc(size * sizeof(Py_ssize_t))
        self.members = <Py_ssize_t*> PyMem_Malloc(size * sizeof(Py_ssize_t))
        self.group_start = <Py_ssize_t*> PyMem_Malloc((groups + 1) * sizeof(Py_ssize_t))
        self.group_kept = <Py_ssize_t*> PyMem_Malloc((groups + 1) * sizeof(Py_ssize_t))
        self.times = <double*> PyMem_Malloc(size * sizeof(double))
        self.values = <double*> PyMem_Malloc(size * sizeof(double))
        self.quality = <unsigned char*> PyMem_Malloc(size)
        self.reasons = <unsigned char*> PyMem_Malloc(size)
        self.cold_junction = <double*> PyMem_Malloc(size * sizeof(double))
        self.sources = <Py_ssize_t*> PyMem_Malloc(size * sizeof(Py_ssize_t))
        self.stamp = <Py_ssize_t*> PyMem_Malloc(size * sizeof(Py_ssize_t))
        self.out_first = <Py_ssize_t*> PyMem_Malloc((size + 1) * sizeof(Py_ssize_t))
        self.out_order = <Py_ssize_t*> PyMem_Malloc(size * sizeof(Py_ssize_t))
        self.cursor = <Py_ssize_t*> PyMem_Malloc((size + 1) * sizeof(Py_ssize_t))
        if (self.group_of == NULL or self.members == NULL or self.group_start == NULL or self.group_kept == NULL
                or self.times == NULL or self.values == NULL or self.quality == NULL or self.reasons == NULL
                or self.cold_junction == NULL or self.sources == NULL or self.stamp == NULL or self.out_first == NULL
                or self.out_order == NULL or self.cursor == NULL):
            raise MemoryError()

    def __dealloc__(self):
        PyMem_Free(self.group_of)
        PyMem_Free(self.members)
        PyMem_Free(self.group_start)
        PyMem_Free(self.group_kept)
        PyMem_Free(self.times)
        PyMem_Free(self.values)
        PyMem_Free(self.quality)
        PyMem_Free(self.reasons)
        PyMem_Free(self.cold_junction)
        PyMem_Free(self.sources)
        PyMem_Free(self.stamp)
        PyMem_Free(self.out_first)
        PyMem_Free(self.out_order)
        PyMem_Free(self.cursor)


def process_frames(list frames, first_frame_id, first_id, table):
    """batch.process_frames, compiled."""
    cdef Py_ssize_t n_frames = len(frames), f, r, g, k, m, n, start, records = 0, n_groups
    cdef dict by_node = table.by_node
    cdef dict group_index = {}
    cdef dict channels
    cdef list chains = []
    cdef _Buffers buf
    cdef list names, values, times, units, reasons_in
    cdef bytearray quality_in
    cdef bint any_chained, any_int
    cdef unsigned char code
    cdef double value
    cdef _PyObject* found
    cdef Py_ssize_t next_id = first_id
    cdef Py_ssize_t* frame_start = <Py_ssize_t*> PyMem_Malloc((n_frames + 1) * sizeof(Py_ssize_t))
    cdef Py_ssize_t* group_of = NULL
    if frame_start == NULL:
        raise MemoryError()
    try:
        for f in range(n_frames):
            frame_start[f] = records
            records += len(<list> (<object> frames[f]).names)
        frame_start[n_frames] = records
        # 1. every record's chain (group index), or -1
        group_of = <Py_ssize_t*> PyMem_Malloc((records if records else 1) * sizeof(Py_ssize_t))
        if group_of == NULL:
            raise MemoryError()
        for f in range(n_frames):
            frame = frames[f]
            start = frame_start[f]
            names = frame.names
            values = frame.values
            n = len(names)
            if frame.content_type != _CT_SENML_OBJECT:
                for r in range(n):
                    group_of[start + r] = -1
                continue
            node = frame.node
            found = _dict_get(by_node, node)
            if found == NULL:
                channels = {}
                by_node[node] = channels
            else:
                channels = <dict> found
            for r in range(n):
                name = names[r]
                found = _dict_get(channels, name)
                if found != NULL:
                    chain = <object> found
                else:
                    chain = table.build(node, name)
                    channels[name] = chain
                if chain is None or not _numeric_value(values[r]):
                    group_of[start + r] = -1
                    continue
                found = _dict_get(group_index, chain)
                if found != NULL:
                    g = <Py_ssize_t> (<object> found)
                else:
                    g = len(chains)
                    group_index[chain] = g
                    chains.append(chain)
                group_of[start + r] = g
        n_groups = len(chains)
        buf = _Buffers(records, n_groups)
        memcpy(buf.group_of, group_of, (records if records else 1) * sizeof(Py_ssize_t))
        return _finish(buf, frames, frame_start, n_frames, records, chains, first_frame_id, next_id)
    finally:
        PyMem_Free(frame_start)
        PyMem_Free(group_of)


cdef list _finish(_Buffers buf, list frames, Py_ssize_t* frame_start, Py_ssize_t n_frames, Py_ssize_t records,
                  list chains, first_frame_id, Py_ssize_t next_id):
    """Steps 2-4 of process_frames: gather, run, scatter, build."""
    cdef Py_ssize_t n_groups = len(chains), f, r, g, k, m, n, start
    cdef Py_ssize_t* group_of = buf.group_of
    cdef list names, values, times, units, reasons_in
    cdef bytearray quality_in
    cdef const unsigned char* quality_codes
    cdef bint any_chained, any_int
    cdef unsigned char code
    cdef double value
    # 2. members by a counting sort on the group; gather the chain inputs
    _memset(buf.group_start, 0, (n_groups + 1) * sizeof(Py_ssize_t))
    for k in range(records):
        if group_of[k] >= 0:
            buf.group_start[group_of[k] + 1] += 1
    for g in range(n_groups):
        buf.group_start[g + 1] += buf.group_start[g]
    for g in range(n_groups + 1):
        buf.cursor[g] = buf.group_start[g]
    for f in range(n_frames):
        start = frame_start[f]
        n = frame_start[f + 1] - start
        frame = frames[f]
        times = frame.times
        values = frame.values
        reasons_in = frame.reasons
        quality_in = frame.quality
        quality_codes = <const unsigned char*> PyByteArray_AS_STRING(quality_in)
        for r in range(n):
            g = group_of[start + r]
            if g < 0:
                continue
            m = buf.cursor[g]
            buf.cursor[g] = m + 1
            buf.members[m] = start + r
            buf.times[m] = _as_double(times[r])
            buf.values[m] = _as_double(values[r])
            buf.quality[m] = quality_codes[r]
            buf.reasons[m] = R_NODE_FAULT if reasons_in[r] is not None else R_NONE
    # per-sample cold junctions; then run each chain
    for g in range(n_groups):
        chain = chains[g]
        start = buf.group_start[g]
        n = buf.group_start[g + 1] - start
        if chain.needs_cold_junction:
            for m in range(start, start + n):
                k = buf.members[m]
                f = _frame_of(frame_start, n_frames, k)
                frame = frames[f]
                r = k - frame_start[f]
                if _has_cold_junction(frame, r):
                    buf.cold_junction[m] = _cold_junction_of(frame, r)
                else:
                    buf.cold_junction[m] = NAN
                    if buf.quality[m] < BAD:
                        buf.quality[m] = BAD
                        buf.reasons[m] = R_NO_COLD_JUNCTION
        _run_group(buf, g, chain, start, n)
    # 3. scatter: outputs counted per record, in record order
    _memset(buf.out_first, 0, (records + 1) * sizeof(Py_ssize_t))
    for g in range(n_groups):
        start = buf.group_start[g]
        for m in range(start, start + buf.group_kept[g]):
            buf.out_first[buf.members[start + buf.sources[m]] + 1] += 1
    for k in range(records):
        buf.out_first[k + 1] += buf.out_first[k]
    for k in range(records + 1):
        buf.cursor[k] = buf.out_first[k]
    for g in range(n_groups):
        start = buf.group_start[g]
        for m in range(start, start + buf.group_kept[g]):
            k = buf.members[start + buf.sources[m]]
            buf.out_order[buf.cursor[k]] = m
            buf.cursor[k] += 1
    # 4. the processed frames
    cdef list out = []
    cdef list o_channels, o_times, o_values, o_units, o_reasons, o_stamps
    cdef bytearray o_quality
    cdef list chain_units = [chain.unit for chain in chains]
    # calibrated chains: the record ids their outputs name (None: not calibrated)
    cdef list chain_ids = [chain.calibration.ids if chain.calibration is not None else None for chain in chains]
    cdef bint any_calibrated = any(ids is not None for ids in chain_ids), stamped
    cdef Py_ssize_t entry
    for f in range(n_frames):
        frame = frames[f]
        start = frame_start[f]
        n = frame_start[f + 1] - start
        if n == 0:
            continue
        names = frame.names
        times = frame.times
        values = frame.values
        units = frame.units
        reasons_in = frame.reasons
        quality_in = frame.quality
        any_chained = False
        any_int = False
        for r in range(n):
            if group_of[start + r] >= 0:
                any_chained = True
                break
            if type(values[r]) is int:
                any_int = True
        if not any_chained:
            if any_int:
                values = [float(x) if type(x) is int else x for x in values]
            out.append(_make_frame(next_id, first_frame_id + f, frame, _KIND_DATA if frame.content_type == _CT_SENML_OBJECT
                                   else _KIND_STATUS, _list_as_tuple(names), _list_as_tuple(times),
                                   _list_as_tuple(values), _list_as_tuple(units), bytes(quality_in),
                                   _list_as_tuple(reasons_in), None))
            next_id += n
            continue
        o_channels = []
        o_times = []
        o_values = []
        o_units = []
        o_reasons = []
        o_stamps = [] if any_calibrated else None
        stamped = False
        o_quality = bytearray(n)
        quality_codes = <const unsigned char*> PyByteArray_AS_STRING(quality_in)
        k = 0  # measurements written
        for r in range(n):
            g = group_of[start + r]
            if g < 0:
                x = values[r]
                o_channels.append(names[r])
                o_times.append(times[r])
                o_values.append(float(x) if type(x) is int else x)
                o_units.append(units[r])
                _put_code(o_quality, k, quality_codes[r])
                o_reasons.append(reasons_in[r])
                if o_stamps is not None:
                    o_stamps.append(None)
                k += 1
                continue
            unit = chain_units[g]
            if unit is None:
                unit = units[r]
            for m in range(buf.out_first[start + r], buf.out_first[start + r + 1]):
                m = buf.out_order[m]
                o_channels.append(names[r])
                x = times[r]
                if type(x) is float and _same_bits(_float_value(x), buf.times[m]):
                    o_times.append(x)  # the input's own float: one object fewer per measurement
                else:
                    o_times.append(buf.times[m])
                value = buf.values[m]
                o_values.append(None if value != value else value)
                o_units.append(unit)
                _put_code(o_quality, k, buf.quality[m])
                code = buf.reasons[m]
                if code == R_NODE_FAULT and reasons_in[r] is not None:
                    o_reasons.append(reasons_in[r])
                else:
                    o_reasons.append(_REASON_NAMES[code] or None)
                if o_stamps is not None:
                    entry = buf.stamp[m] if chain_ids[g] is not None else -1
                    if entry >= 0:
                        o_stamps.append((<tuple> chain_ids[g])[entry])
                        stamped = True
                    else:
                        o_stamps.append(None)
                k += 1
        if k == 0:
            continue
        out.append(_make_frame(next_id, first_frame_id + f, frame, _KIND_DATA, _list_as_tuple(o_channels),
                               _list_as_tuple(o_times), _list_as_tuple(o_values), _list_as_tuple(o_units),
                               bytes(o_quality[:k]) if k != n else bytes(o_quality), _list_as_tuple(o_reasons),
                               _list_as_tuple(o_stamps) if stamped else None))
        next_id += k
    return out


cdef inline bint _same_bits(double a, double b) noexcept:
    return memcmp(&a, &b, sizeof(double)) == 0


cdef inline int _put_code(bytearray codes, Py_ssize_t at, unsigned char code) except -1:
    """codes[at] = code, growing the array when a record gave several outputs."""
    if at >= PyByteArray_GET_SIZE(codes):
        PyByteArray_Resize(codes, 2 * at + 1)
    PyByteArray_AS_STRING(codes)[at] = <char> code
    return 0


cdef tuple _FIELDS = tuple(_ProcessedFrame.__dataclass_fields__)
cdef object _new_frame = _ProcessedFrame.__new__


cdef object _make_frame(Py_ssize_t first_id, frame_id, object frame, int kind, tuple channels, tuple times,
                        tuple values, tuple units, bytes quality, tuple reasons, object calibrations):
    """A ProcessedFrame, its fields set as the frozen dataclass's __init__
    sets them (object.__setattr__) but without a Python frame per field."""
    made = _new_frame(_ProcessedFrame)
    fields = (first_id, frame_id, frame.node, frame.seq, kind, frame.received, channels, times, values, units,
              quality, reasons, None, calibrations)
    for k in range(14):
        PyObject_GenericSetAttr(made, _FIELDS[k], fields[k])
    return made


cdef Py_ssize_t _frame_of(const Py_ssize_t* frame_start, Py_ssize_t n_frames, Py_ssize_t record) noexcept:
    """The frame holding global record index ``record`` (binary search)."""
    cdef Py_ssize_t lo = 0, hi = n_frames - 1, mid
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if frame_start[mid] <= record:
            lo = mid
        else:
            hi = mid - 1
    return lo


cdef int _run_group(_Buffers buf, Py_ssize_t g, object chain, Py_ssize_t start, Py_ssize_t n) except -1:
    """One chain over its members' slots; then which member each output
    stands for (buf.sources[start + k])."""
    cdef double* inputs = <double*> PyMem_Malloc((n if n else 1) * sizeof(double))
    cdef Py_ssize_t kept, k, source
    cdef bint identity
    cdef Calibration calibration = chain.calibration
    if inputs == NULL:
        raise MemoryError()
    try:
        memcpy(inputs, buf.times + start, n * sizeof(double))
        if calibration is not None:
            calibration.reserve(n)
        kept = _run_kernels(chain, buf.times + start, buf.values + start, buf.quality + start, buf.reasons + start,
                            buf.cold_junction + start if chain.needs_cold_junction else NULL, n)
        buf.group_kept[g] = kept
        identity = kept == n
        if identity:
            for k in range(n):
                if buf.times[start + k] != inputs[k]:
                    identity = False
                    break
        if identity:
            for k in range(n):
                buf.sources[start + k] = k
        else:
            _origins(inputs, n, buf.times + start, kept, buf.sources + start)
        if calibration is not None:  # batch._run_group: the record each output names
            if calibration._short:
                raise MemoryError("the calibration kernel could not record the entries applied")
            for k in range(kept):
                source = buf.sources[start + k]
                if buf.times[start + k] == inputs[source]:
                    buf.stamp[start + k] = calibration._applied[source]
                else:
                    buf.stamp[start + k] = calibration._entry_at(buf.times[start + k])
    finally:
        PyMem_Free(inputs)
    return 0
