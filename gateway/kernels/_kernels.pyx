# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled twin of ``pure.py``: same classes, same arithmetic, same results.

``pure.py`` documents the behaviour of each kernel; this file only says how it
is made fast.  Each ``process`` checks its buffers once, takes raw pointers and
runs its loop without the GIL; per-sample work is C arithmetic only.  The
floating-point operations are done in the same order as in ``pure.py`` so the
two give bit-identical results.
"""

cimport cython
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_RawFree, PyMem_RawRealloc
from libc.math cimport INFINITY, NAN, exp, expm1, fabs, floor, isfinite

from .. import quality as _codes
from . import its90 as _its90
from .pure import ALPHA_REUSE as _ALPHA_REUSE, LIFE_HIGH_C as _LIFE_HIGH_C, LIFE_LOW_C as _LIFE_LOW_C
from .pure import schedule_entries as _schedule_entries

IMPLEMENTATION = "cython"

# Codes come from the one table in codes.py (C globals, read once at import).
cdef unsigned char GOOD = _codes.GOOD
cdef unsigned char UNCERTAIN = _codes.UNCERTAIN
cdef unsigned char BAD = _codes.BAD
cdef unsigned char R_NONE = _codes.NONE
cdef unsigned char R_NOT_FINITE = _codes.NOT_FINITE
cdef unsigned char R_OUT_OF_RANGE = _codes.OUT_OF_RANGE
cdef unsigned char R_EMF_OUT_OF_RANGE = _codes.EMF_OUT_OF_RANGE
cdef unsigned char R_CJ_OUT_OF_RANGE = _codes.CJ_OUT_OF_RANGE
cdef unsigned char R_WIRE_BREAK = _codes.WIRE_BREAK
cdef unsigned char R_SHORT_CIRCUIT = _codes.SHORT_CIRCUIT
cdef unsigned char R_LOOP_UNDER_RANGE = _codes.LOOP_UNDER_RANGE
cdef unsigned char R_LOOP_OVER_RANGE = _codes.LOOP_OVER_RANGE
cdef unsigned char R_LOOP_FAULT_BAND_LOW = _codes.LOOP_FAULT_BAND_LOW
cdef unsigned char R_LOOP_FAULT_BAND_HIGH = _codes.LOOP_FAULT_BAND_HIGH
cdef unsigned char R_SPIKE_REPLACED = _codes.SPIKE_REPLACED
cdef unsigned char R_RATE_OF_CHANGE = _codes.RATE_OF_CHANGE
cdef unsigned char R_NO_GOOD_DATA = _codes.NO_GOOD_DATA
cdef unsigned char R_UNCERTAIN_INPUTS = _codes.UNCERTAIN_INPUTS
cdef unsigned char R_CALIBRATION_DUE = _codes.CALIBRATION_DUE
cdef unsigned char R_NO_CALIBRATION = _codes.NO_CALIBRATION
cdef unsigned char R_SAT_FAILED = _codes.SAT_FAILED
cdef unsigned char R_USAGE_LIMIT = _codes.USAGE_LIMIT
cdef unsigned char R_OUTSIDE_CALIBRATION = _codes.OUTSIDE_CALIBRATION


cdef Py_ssize_t _length(double[::1] times, double[::1] values,
                        unsigned char[::1] quality, unsigned char[::1] reason) except -1:
    cdef Py_ssize_t n = values.shape[0]
    if times.shape[0] != n or quality.shape[0] != n or reason.shape[0] != n:
        raise ValueError("times, values, quality and reason must have the same length")
    return n


cdef inline void lower_to(unsigned char* quality, unsigned char* reason, Py_ssize_t i,
                          unsigned char new_quality, unsigned char new_reason) noexcept nogil:
    if new_quality > quality[i]:
        quality[i] = new_quality
        reason[i] = new_reason


# ---------------------------------------------------------------- the kernel base

cdef class Kernel:
    """Base of every compiled kernel.  ``run`` is the C entry the chain
    runner calls (no Python, no GIL); ``process`` is the Python one: it checks
    the buffers, then runs.  ``cj`` is the per-sample cold junction (°C) or
    NULL; only the thermocouple reads it."""

    cdef Py_ssize_t run(self, double* t, double* v, unsigned char* q, unsigned char* r, const double* cj,
                        Py_ssize_t n) noexcept nogil:
        return n

    def process(self, double[::1] times, double[::1] values,
                unsigned char[::1] quality, unsigned char[::1] reason):
        cdef Py_ssize_t n = _length(times, values, quality, reason)
        if n == 0:
            return 0
        with nogil:
            n = self.run(&times[0], &values[0], &quality[0], &reason[0], NULL, n)
        return n


# ---------------------------------------------------------------- polynomials

cdef enum:
    MAX_COEFFICIENTS = 15  # type T below 0 °C: c0..c14
    MAX_RANGES = 4


cdef struct Poly:
    double lo
    double hi
    int size
    double c[MAX_COEFFICIENTS]


cdef inline double horner(const Poly* p, double x) noexcept nogil:
    cdef double acc = 0.0
    cdef int k
    for k in range(p.size - 1, -1, -1):
        acc = acc * x + p.c[k]
    return acc


cdef int _fill_poly(Poly* p, double lo, double hi, coefficients) except -1:
    if len(coefficients) > MAX_COEFFICIENTS:
        raise ValueError(f"at most {MAX_COEFFICIENTS} coefficients are supported")
    p.lo = lo
    p.hi = hi
    p.size = len(coefficients)
    for k, c in enumerate(coefficients):
        p.c[k] = c
    return 0


# ---------------------------------------------------------------- simple kernels

cdef class FlagNonFinite(Kernel):
    cdef Py_ssize_t run(self, double* t, double* v, unsigned char* q, unsigned char* r, const double* cj,
                        Py_ssize_t n) noexcept nogil:
        cdef Py_ssize_t i
        for i in range(n):
            if q[i] != BAD and not (isfinite(v[i]) and isfinite(t[i])):
                q[i] = BAD
                r[i] = R_NOT_FINITE
        return n


cdef class Linear(Kernel):
    cdef readonly double gain, offset

    def __init__(self, gain, offset):
        self.gain = gain
        self.offset = offset

    cdef Py_ssize_t run(self, double* t, double* v, unsigned char* q, unsigned char* r, const double* cj,
                        Py_ssize_t n) noexcept nogil:
        cdef Py_ssize_t i
        cdef double gain = self.gain, offset = self.offset
        for i in range(n):
            if q[i] != BAD:
                v[i] = v[i] * gain + offset
        return n


cdef class Polynomial(Kernel):
    cdef Poly poly
    cdef readonly tuple coefficients

    def __init__(self, coefficients):
        self.coefficients = tuple(float(c) for c in coefficients)
        if not self.coefficients:
            raise ValueError("a polynomial needs at least one coefficient")
        _fill_poly(&self.poly, -INFINITY, INFINITY, self.coefficients)

    cdef Py_ssize_t run(self, double* t, double* v, unsigned char* q, unsigned char* r, const double* cj,
                        Py_ssize_t n) noexcept nogil:
        cdef Py_ssize_t i
        for i in range(n):
            if q[i] != BAD:
                v[i] = horner(&self.poly, v[i])
        return n


# ---------------------------------------------------------------- thermocouples

cdef struct TcTable:
    int n_forward
    int n_inverse
    bint k_exponential
    Poly forward[MAX_RANGES]
    Poly inverse[MAX_RANGES]


cdef double K_A0 = _its90.K_EXPONENTIAL[0]
cdef double K_A1 = _its90.K_EXPONENTIAL[1]
cdef double K_A2 = _its90.K_EXPONENTIAL[2]


cdef int _load_table(TcTable* table, str tc_type) except -1:
    forward = _its90.FORWARD[tc_type]
    inverse = _its90.INVERSE[tc_type]
    table.n_forward = len(forward)
    table.n_inverse = len(inverse)
    table.k_exponential = tc_type == "K"
    for k, (t_min, t_max, coefficients) in enumerate(forward):
        _fill_poly(&table.forward[k], t_min, t_max, coefficients)
    for k, (emf_min, emf_max, coefficients, _err_min, _err_max) in enumerate(inverse):
        _fill_poly(&table.inverse[k], emf_min, emf_max, coefficients)
    return 0


cdef inline bint forward_emf(const TcTable* table, double celsius, double* emf) noexcept nogil:
    """Reference function E(t); False outside its range."""
    cdef int k
    cdef double d
    for k in range(table.n_forward):
        if table.forward[k].lo <= celsius <= table.forward[k].hi:
            emf[0] = horner(&table.forward[k], celsius)
            if table.k_exponential and celsius > 0.0:
                d = celsius - K_A2
                emf[0] += K_A0 * exp(K_A1 * d * d)
            return True
    return False


cdef inline bint inverse_celsius(const TcTable* table, double emf, double* celsius) noexcept nogil:
    """Inverse polynomial t(E); False outside its range."""
    cdef int k
    for k in range(table.n_inverse):
        if table.inverse[k].lo <= emf <= table.inverse[k].hi:
            celsius[0] = horner(&table.inverse[k], emf)
            return True
    return False


cdef class _Table:
    cdef TcTable table

    def __init__(self, str tc_type):
        if tc_type not in _its90.FORWARD:
            raise ValueError(f"unknown thermocouple type {tc_type!r}")
        _load_table(&self.table, tc_type)


_TABLES = {tc_type: _Table(tc_type) for tc_type in _its90.TYPES}


def celsius_to_emf(str tc_type, double celsius):
    """NIST reference function E(t) in mV; ValueError outside its range."""
    cdef _Table t = _TABLES[tc_type]
    cdef double emf
    if not forward_emf(&t.table, celsius, &emf):
        raise ValueError(f"{celsius} °C outside the type {tc_type} reference function")
    return emf


def emf_to_celsius(str tc_type, double emf):
    """NIST inverse polynomial t(E) in °C; ValueError outside its range."""
    cdef _Table t = _TABLES[tc_type]
    cdef double celsius
    if not inverse_celsius(&t.table, emf, &celsius):
        raise ValueError(f"{emf} mV outside the type {tc_type} inverse polynomial")
    return celsius


cdef class Thermocouple(Kernel):
    cdef TcTable table
    cdef readonly str tc_type
    cdef readonly double cold_junction

    def __init__(self, str tc_type, cold_junction):
        if tc_type not in _its90.FORWARD:
            raise ValueError(f"unknown thermocouple type {tc_type!r}")
        self.tc_type = tc_type
        self.cold_junction = cold_junction
        _load_table(&self.table, tc_type)

    def process(self, double[::1] times, double[::1] values,
                unsigned char[::1] quality, unsigned char[::1] reason,
                double[::1] cold_junction=None):
        cdef Py_ssize_t n = _length(times, values, quality, reason)
        if cold_junction is not None and cold_junction.shape[0] != n:
            raise ValueError("cold_junction must have one temperature per sample")
        if n == 0:
            return 0
        cdef const double* cj = &cold_junction[0] if cold_junction is not None else NULL
        with nogil:
            n = self.run(&times[0], &values[0], &quality[0], &reason[0], cj, n)
        return n

    cdef Py_ssize_t run(self, double* t, double* v, unsigned char* q, unsigned char* r, const double* cj,
                        Py_ssize_t n) noexcept nogil:
        cdef Py_ssize_t i
        cdef double cj_celsius = self.cold_junction, cj_emf, celsius
        cdef const TcTable* table = &self.table
        for i in range(n):
            if q[i] == BAD:
                continue
            if cj != NULL:
                cj_celsius = cj[i]
            if not forward_emf(table, cj_celsius, &cj_emf):
                lower_to(q, r, i, BAD, R_CJ_OUT_OF_RANGE)
            elif inverse_celsius(table, v[i] + cj_emf, &celsius):
                v[i] = celsius
            else:
                lower_to(q, r, i, BAD, R_EMF_OUT_OF_RANGE)
        return n


# ---------------------------------------------------------------- 4-20 mA

cdef class CurrentLoop(Kernel):
    cdef readonly double lrv, urv

    def __init__(self, lrv, urv):
        self.lrv = lrv
        self.urv = urv

    cdef Py_ssize_t run(self, double* t, double* v, unsigned char* q, unsigned char* r, const double* cj,
                        Py_ssize_t n) noexcept nogil:
        cdef Py_ssize_t i
        cdef double scale = (self.urv - self.lrv) / 16.0, lrv = self.lrv, ma
        for i in range(n):
            if q[i] == BAD:
                continue
            ma = v[i]
            if ma <= 3.6:
                lower_to(q, r, i, BAD, R_WIRE_BREAK)
                continue
            if ma >= 21.0:
                lower_to(q, r, i, BAD, R_SHORT_CIRCUIT)
                continue
            if ma < 3.8:
                lower_to(q, r, i, UNCERTAIN, R_LOOP_FAULT_BAND_LOW)
            elif ma < 4.0:
                lower_to(q, r, i, UNCERTAIN, R_LOOP_UNDER_RANGE)
            elif ma > 20.5:
                lower_to(q, r, i, UNCERTAIN, R_LOOP_FAULT_BAND_HIGH)
            elif ma > 20.0:
                lower_to(q, r, i, UNCERTAIN, R_LOOP_OVER_RANGE)
            v[i] = lrv + (ma - 4.0) * scale
        return n


cdef class RangeCheck(Kernel):
    cdef readonly double minimum, maximum

    def __init__(self, minimum, maximum):
        self.minimum = minimum
        self.maximum = maximum

    cdef Py_ssize_t run(self, double* t, double* v, unsigned char* q, unsigned char* r, const double* cj,
                        Py_ssize_t n) noexcept nogil:
        cdef Py_ssize_t i
        cdef double lo = self.minimum, hi = self.maximum
        for i in range(n):
            if q[i] != BAD and not (lo <= v[i] <= hi):
                lower_to(q, r, i, BAD, R_OUT_OF_RANGE)
        return n


# ---------------------------------------------------------------- Hampel

cdef inline double median_of_sorted(const double* s, int n) noexcept nogil:
    cdef int h = n // 2
    if n % 2:
        return s[h]
    return 0.5 * (s[h - 1] + s[h])


cdef inline int lower_bound(const double* s, int n, double x) noexcept nogil:
    cdef int lo = 0, hi = n, mid
    while lo < hi:
        mid = (lo + hi) // 2
        if s[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef inline double mad_of_sorted(const double* s, int n, double median) noexcept nogil:
    """Median of |s - median| without sorting: the deviations left of the
    middle (walking down) and right of it (walking up) are each ascending, so
    merging the two for n // 2 + 1 steps reaches the middle of their union."""
    cdef int left = (n - 1) // 2, right = left + 1, k
    cdef double dev = 0.0, previous = 0.0, d_left, d_right
    cdef bint take_left
    for k in range(n // 2 + 1):
        previous = dev
        d_left = median - s[left] if left >= 0 else INFINITY
        d_right = s[right] - median if right < n else INFINITY
        # branch-free step: the comparison is data-dependent and unpredictable
        take_left = d_left <= d_right
        dev = d_left if take_left else d_right
        left -= take_left
        right += 1 - take_left
    if n % 2:
        return dev
    return 0.5 * (previous + dev)


@cython.final
cdef class Hampel(Kernel):
    cdef readonly int window
    cdef readonly double threshold
    cdef double* ring      # raw values in arrival order (circular)
    cdef double* ordered   # the same values, sorted
    cdef int count, head

    MAD_TO_SIGMA = 1.4826

    def __cinit__(self, window, threshold):
        if window < 3:
            raise ValueError("Hampel window must be at least 3 samples")
        self.window = window
        self.threshold = threshold
        self.ring = <double*> PyMem_Malloc(window * sizeof(double))
        self.ordered = <double*> PyMem_Malloc(window * sizeof(double))
        if self.ring == NULL or self.ordered == NULL:
            raise MemoryError()
        self.count = 0
        self.head = 0

    def __dealloc__(self):
        PyMem_Free(self.ring)
        PyMem_Free(self.ordered)

    @property
    def history(self):
        """Raw values in the window, oldest first (for inspection and tests)."""
        start = (self.head - self.count) % self.window
        return [self.ring[(start + k) % self.window] for k in range(self.count)]

    cdef Py_ssize_t run(self, double* t, double* v, unsigned char* q, unsigned char* r, const double* cj,
                        Py_ssize_t n) noexcept nogil:
        cdef Py_ssize_t i
        cdef double limit_scale = self.threshold * 1.4826, x, median, mad, spread
        # state in locals: the C compiler must otherwise reload it after every
        # store (Python builds with -fno-strict-aliasing)
        cdef int w = self.window, count = self.count, head = self.head, j
        cdef double* ring = self.ring
        cdef double* s = self.ordered
        # the lower bound's indexes (see below): k = (w - 1) // 2 deviations
        # split i = k // 2 to the left, k - i to the right of the middle
        cdef int half = (w - 1) // 2, split = half // 2
        cdef int mid_left = half, mid_right = half + 1
        cdef bint quick = limit_scale >= 0.0 and mid_right + half - split < w
        for i in range(n):
            if q[i] == BAD:
                continue
            x = v[i]
            if count == w:
                # the oldest value's slot in the sorted copy takes x, which
                # then slides to its rank (a few places for a smooth signal)
                j = lower_bound(s, w, ring[head])
                while j + 1 < w and s[j + 1] < x:
                    s[j] = s[j + 1]
                    j += 1
                while j > 0 and s[j - 1] > x:
                    s[j] = s[j - 1]
                    j -= 1
                s[j] = x
            else:
                j = count
                while j > 0 and s[j - 1] > x:
                    s[j] = s[j - 1]
                    j -= 1
                s[j] = x
                count += 1
            ring[head] = x
            head += 1
            if head == w:
                head = 0
            if count < w:
                continue
            median = median_of_sorted(s, w)
            # Most samples are no spike, and a cheap lower bound of the
            # MAD proves it: the (w-1)//2-th smallest deviation is <= MAD,
            # and is >= min(A[i], B[k - i]) for the deviations walking left
            # (A) and right (B) of the middle.  Rounded multiplication is
            # monotonic, so "not above scale * bound" implies "not above
            # scale * MAD": the same decision as the full MAD, exactly.
            # (Two comparisons rather than fmin: any NaN takes the full path.)
            if quick:
                spread = fabs(x - median)
                if (spread <= limit_scale * (median - s[mid_left - split])
                        and spread <= limit_scale * (s[mid_right + half - split] - median)):
                    continue
            mad = mad_of_sorted(s, w, median)
            if fabs(x - median) > limit_scale * mad:
                v[i] = median + 0.0  # -0.0 and 0.0 sort as equals: give the same zero as the pure twin
                lower_to(q, r, i, UNCERTAIN, R_SPIKE_REPLACED)
        self.count = count
        self.head = head
        return n


# ---------------------------------------------------------------- deadband

cdef class Deadband(Kernel):
    cdef readonly double absolute, percent, max_silence
    cdef readonly bint started
    cdef readonly double last_value, last_time
    cdef readonly unsigned char last_quality, last_reason

    def __init__(self, absolute, percent, max_silence):
        self.absolute = absolute
        self.percent = percent
        self.max_silence = max_silence
        self.started = False
        self.last_value = 0.0
        self.last_time = 0.0
        self.last_quality = 0
        self.last_reason = 0

    cdef Py_ssize_t run(self, double* tp, double* vp, unsigned char* qp, unsigned char* rp, const double* cj,
                        Py_ssize_t n) noexcept nogil:
        cdef Py_ssize_t i, kept = 0
        cdef double t, v, band, relative
        cdef unsigned char q, r
        cdef bint emit
        for i in range(n):
            t = tp[i]
            v = vp[i]
            q = qp[i]
            r = rp[i]
            emit = not self.started or q != self.last_quality or r != self.last_reason
            if not emit and self.max_silence > 0.0 and t - self.last_time >= self.max_silence:
                emit = True
            if not emit and q != BAD:
                band = self.absolute
                relative = self.percent * 0.01 * fabs(self.last_value)
                if relative > band:
                    band = relative
                emit = fabs(v - self.last_value) > band
            if not emit:
                continue
            if q != BAD:
                self.last_value = v
            self.started = True
            self.last_time = t
            self.last_quality = q
            self.last_reason = r
            tp[kept] = t
            vp[kept] = v
            qp[kept] = q
            rp[kept] = r
            kept += 1
        return kept


# ---------------------------------------------------------------- EMA

cdef double ALPHA_REUSE = _ALPHA_REUSE

cdef class Ema(Kernel):
    cdef readonly double alpha, time_constant
    cdef readonly bint started
    cdef readonly double y, last_time, alpha_dt, cached_alpha

    def __init__(self, alpha, time_constant):
        self.alpha = alpha
        self.time_constant = time_constant
        self.started = False
        self.y = 0.0
        self.last_time = 0.0
        self.alpha_dt = -1.0
        self.cached_alpha = 0.0

    cdef Py_ssize_t run(self, double* tp, double* vp, unsigned char* qp, unsigned char* rp, const double* cj,
                        Py_ssize_t n) noexcept nogil:
        cdef Py_ssize_t i
        cdef double t, dt, alpha = self.alpha, tau = self.time_constant
        cdef double y = self.y, last_time = self.last_time
        cdef double alpha_dt = self.alpha_dt, cached_alpha = self.cached_alpha
        cdef bint started = self.started
        for i in range(n):
            if qp[i] == BAD:
                continue
            t = tp[i]
            if not started:
                started = True
                y = vp[i]
            else:
                if tau > 0.0:
                    dt = t - last_time
                    if dt <= 0.0:
                        alpha = 0.0
                    else:
                        if fabs(dt - alpha_dt) > ALPHA_REUSE * alpha_dt:
                            alpha_dt = dt
                            cached_alpha = -expm1(-dt / tau)
                        alpha = cached_alpha
                y = y + alpha * (vp[i] - y)
            last_time = t
            vp[i] = y
        self.y = y
        self.last_time = last_time
        self.started = started
        self.alpha_dt = alpha_dt
        self.cached_alpha = cached_alpha
        return n


# ---------------------------------------------------------------- rate of change

cdef class RateLimit(Kernel):
    cdef readonly double max_rate
    cdef readonly unsigned char flag_quality
    cdef readonly bint started
    cdef readonly double ref_time, ref_value

    def __init__(self, max_rate, flag_quality):
        self.max_rate = max_rate
        self.flag_quality = flag_quality
        self.started = False
        self.ref_time = 0.0
        self.ref_value = 0.0

    cdef Py_ssize_t run(self, double* tp, double* vp, unsigned char* qp, unsigned char* rp, const double* cj,
                        Py_ssize_t n) noexcept nogil:
        cdef Py_ssize_t i
        cdef double t, v, max_rate = self.max_rate
        cdef double ref_time = self.ref_time, ref_value = self.ref_value
        cdef bint started = self.started
        cdef unsigned char flag = self.flag_quality
        for i in range(n):
            if qp[i] == BAD:
                continue
            t = tp[i]
            v = vp[i]
            if started and fabs(v - ref_value) > max_rate * (t - ref_time):
                lower_to(qp, rp, i, flag, R_RATE_OF_CHANGE)
                continue
            started = True
            ref_time = t
            ref_value = v
        self.started = started
        self.ref_time = ref_time
        self.ref_value = ref_value
        return n


# ---------------------------------------------------------------- aggregation

AGGREGATE_FUNCTIONS = ("min", "max", "mean", "count")


@cython.final
cdef class Aggregate(Kernel):
    cdef readonly double period
    cdef readonly int function
    cdef readonly long long dropped
    cdef readonly bint open
    cdef readonly double index
    cdef readonly long long count, uncertain
    cdef readonly double total, low, high

    def __init__(self, period, str function):
        if function not in AGGREGATE_FUNCTIONS:
            raise ValueError(f"unknown aggregate function {function!r}")
        self.period = period
        self.function = AGGREGATE_FUNCTIONS.index(function)
        self.dropped = 0
        self.open = False
        self.index = 0.0
        self._reset()

    cdef inline void _reset(self) noexcept nogil:
        self.count = 0
        self.uncertain = 0
        self.total = 0.0
        self.low = INFINITY
        self.high = -INFINITY

    cdef inline void _result(self, double* value, unsigned char* q, unsigned char* r) noexcept nogil:
        if self.count == 0:
            value[0] = 0.0 if self.function == 3 else NAN
            q[0] = BAD
            r[0] = R_NO_GOOD_DATA
            return
        if self.function == 0:
            value[0] = self.low
        elif self.function == 1:
            value[0] = self.high
        elif self.function == 2:
            value[0] = self.total / self.count
        else:
            value[0] = <double> self.count
        if self.uncertain:
            q[0] = UNCERTAIN
            r[0] = R_UNCERTAIN_INPUTS
        else:
            q[0] = GOOD
            r[0] = R_NONE

    cdef Py_ssize_t run(self, double* tp, double* vp, unsigned char* qp, unsigned char* rp, const double* cj,
                        Py_ssize_t n) noexcept nogil:
        cdef Py_ssize_t i, kept = 0
        cdef double t, v, index, period = self.period
        cdef unsigned char q
        for i in range(n):
            t = tp[i]
            v = vp[i]
            q = qp[i]
            index = t / period
            if not isfinite(index):
                self.dropped += 1
                continue
            index = floor(index)
            if self.open and index < self.index:
                self.dropped += 1
                continue
            if self.open and index > self.index:
                self._result(&vp[kept], &qp[kept], &rp[kept])
                tp[kept] = self.index * period
                kept += 1
                self._reset()
            self.open = True
            self.index = index
            if q == BAD:
                continue
            self.count += 1
            self.total += v
            if v < self.low:
                self.low = v
            if v > self.high:
                self.high = v
            if q == UNCERTAIN:
                self.uncertain += 1
        return kept


# ---------------------------------------------------------------- calibration records

cdef struct CalEntry:
    double start
    double end
    double overdue_from
    double sat_failed_from
    double gain
    double offset
    Py_ssize_t first_point  # into the kernel's xs/cs
    Py_ssize_t n_points


@cython.final
cdef class Calibration(Kernel):
    """pure.Calibration: the schedule in C arrays, the entry found by a
    scan from the newest (a sensor has a handful of records, and most
    readings fall in the newest)."""

    cdef readonly unsigned char overdue_quality, sat_failed_quality, missing_quality
    cdef readonly tuple ids
    cdef CalEntry* _entries
    cdef Py_ssize_t _count
    cdef double* _xs
    cdef double* _cs
    cdef long long* _applied  # per sample of the last batch: the entry applied, or -1
    cdef Py_ssize_t _capacity, _last_n
    cdef bint _short  # the last run could not grow _applied (out of memory)

    def __init__(self, overdue_quality, sat_failed_quality, missing_quality):
        self.overdue_quality = overdue_quality
        self.sat_failed_quality = sat_failed_quality
        self.missing_quality = missing_quality
        self.ids = ()

    def __dealloc__(self):
        PyMem_Free(self._entries)
        PyMem_Free(self._xs)
        PyMem_Free(self._cs)
        PyMem_RawFree(self._applied)

    def set_schedule(self, entries):
        checked, ids = _schedule_entries(entries)
        cdef Py_ssize_t count = len(checked), points = sum(len(e.points) for e in checked), k, j, at = 0
        cdef CalEntry* made = <CalEntry*> PyMem_Malloc((count if count else 1) * sizeof(CalEntry))
        cdef double* xs = <double*> PyMem_Malloc((points if points else 1) * sizeof(double))
        cdef double* cs = <double*> PyMem_Malloc((points if points else 1) * sizeof(double))
        if made == NULL or xs == NULL or cs == NULL:
            PyMem_Free(made)
            PyMem_Free(xs)
            PyMem_Free(cs)
            raise MemoryError()
        for k in range(count):
            e = checked[k]
            made[k].start = e.start
            made[k].end = e.end
            made[k].overdue_from = e.overdue_from
            made[k].sat_failed_from = e.sat_failed_from
            made[k].gain = e.gain
            made[k].offset = e.offset
            made[k].first_point = at
            made[k].n_points = len(e.points)
            for j in range(len(e.points)):
                xs[at + j] = e.points[j][0]
                cs[at + j] = e.points[j][1]
            at += len(e.points)
        PyMem_Free(self._entries)
        PyMem_Free(self._xs)
        PyMem_Free(self._cs)
        self._entries, self._xs, self._cs, self._count, self.ids = made, xs, cs, count, ids

    cdef inline Py_ssize_t _entry_at(self, double t) noexcept nogil:
        cdef Py_ssize_t k
        for k in range(self._count - 1, -1, -1):
            if self._entries[k].start <= t:
                return k if t < self._entries[k].end else -1
        return -1

    def entry_at(self, double t):
        return self._entry_at(t)

    def reserve(self, Py_ssize_t n):
        """Room for ``n`` samples' entries (the batch runner calls it
        before a run; ``run`` itself holds no GIL to raise with)."""
        cdef long long* grown
        if n > self._capacity:
            grown = <long long*> PyMem_RawRealloc(self._applied, n * sizeof(long long))
            if grown == NULL:
                raise MemoryError()
            self._applied, self._capacity = grown, n

    @property
    def applied(self):
        if self._short:
            raise MemoryError("the calibration kernel could not record the entries applied")
        from array import array
        out = array("q", [-1]) * self._last_n
        cdef Py_ssize_t i
        for i in range(self._last_n):
            out[i] = self._applied[i]
        return out

    def process(self, double[::1] times, double[::1] values,
                unsigned char[::1] quality, unsigned char[::1] reason):
        cdef Py_ssize_t n = _length(times, values, quality, reason)
        self.reserve(n)
        self._last_n = 0
        if n == 0:
            return 0
        with nogil:
            n = self.run(&times[0], &values[0], &quality[0], &reason[0], NULL, n)
        return n

    cdef Py_ssize_t run(self, double* tp, double* vp, unsigned char* qp, unsigned char* rp, const double* cj,
                        Py_ssize_t n) noexcept nogil:
        cdef Py_ssize_t i, k, j, last
        cdef double t, x, y, correction, x0, x1, c0, c1
        cdef bint outside
        cdef const CalEntry* e
        cdef const double* xs
        cdef const double* cs
        cdef long long* grown
        if n > self._capacity:
            grown = <long long*> PyMem_RawRealloc(self._applied, n * sizeof(long long))
            if grown == NULL:  # out of memory: correct nothing rather than stamp wrongly
                self._short = True
                return n
            self._applied, self._capacity = grown, n
        self._short = False
        self._last_n = n
        for i in range(n):
            self._applied[i] = -1
            if qp[i] == BAD:
                continue
            t = tp[i]
            k = self._entry_at(t)
            if k < 0:
                if self.missing_quality:
                    lower_to(qp, rp, i, self.missing_quality, R_NO_CALIBRATION)
                continue
            e = &self._entries[k]
            x = vp[i]
            y = x * e.gain + e.offset
            outside = False
            if e.n_points:
                xs = self._xs + e.first_point
                cs = self._cs + e.first_point
                last = e.n_points - 1
                if x < xs[0]:
                    correction = cs[0]
                    outside = True
                elif x > xs[last]:
                    correction = cs[last]
                    outside = True
                else:
                    correction = cs[last]
                    for j in range(last):
                        x1 = xs[j + 1]
                        if x <= x1:
                            x0 = xs[j]
                            c0 = cs[j]
                            c1 = cs[j + 1]
                            correction = c0 + (c1 - c0) * ((x - x0) / (x1 - x0))
                            break
                y = y + correction
            vp[i] = y
            self._applied[i] = k
            if t >= e.overdue_from:
                lower_to(qp, rp, i, self.overdue_quality, R_CALIBRATION_DUE)
            if t >= e.sat_failed_from:
                lower_to(qp, rp, i, self.sat_failed_quality, R_SAT_FAILED)
            if outside:
                lower_to(qp, rp, i, UNCERTAIN, R_OUTSIDE_CALIBRATION)
        return n


# ---------------------------------------------------------------- thermocouple life

cdef double LIFE_LOW_C = _LIFE_LOW_C
cdef double LIFE_HIGH_C = _LIFE_HIGH_C


@cython.final
cdef class ThermocoupleLife(Kernel):
    """pure.ThermocoupleLife, the bands in a C array."""

    cdef readonly double band, cycle_above, hysteresis, limit_above, max_gap, limit_seconds
    cdef readonly long long limit_cycles
    cdef readonly unsigned char over_quality
    cdef public bint counting, changed
    cdef readonly double life_start, seconds_above, unaccounted, first_time, last_time, last_value, peak, peak_time
    cdef readonly double exceeded_at
    cdef readonly long long cycles
    cdef readonly bint hot, started
    cdef readonly Py_ssize_t n_bands
    cdef double first_band
    cdef double* _bands

    def __init__(self, band, cycle_above, hysteresis, limit_above, limit_seconds, limit_cycles, over_quality, max_gap):
        if not band > 0.0:
            raise ValueError("the band width must be greater than 0")
        self.limit_seconds = limit_seconds
        self.limit_cycles = limit_cycles
        self.over_quality = over_quality
        self.counting = True
        self.changed = False
        self._counted_as(band, cycle_above, hysteresis, limit_above, max_gap)
        self.reset(-INFINITY)

    def __dealloc__(self):
        PyMem_Free(self._bands)

    cdef int _counted_as(self, double band, double cycle_above, double hysteresis, double limit_above,
                         double max_gap) except -1:
        cdef Py_ssize_t n = <Py_ssize_t> (floor(LIFE_HIGH_C / band) - floor(LIFE_LOW_C / band) + 1)
        cdef double* bands = <double*> PyMem_Malloc(n * sizeof(double))
        if bands == NULL:
            raise MemoryError()
        PyMem_Free(self._bands)
        self._bands = bands
        self.n_bands = n
        self.band = band
        self.cycle_above = cycle_above
        self.hysteresis = hysteresis
        self.limit_above = limit_above
        self.max_gap = max_gap
        self.first_band = floor(LIFE_LOW_C / band)
        return 0

    def reset(self, double life_start):
        cdef Py_ssize_t k
        self.life_start = life_start
        for k in range(self.n_bands):
            self._bands[k] = 0.0
        self.seconds_above = 0.0
        self.unaccounted = 0.0
        self.cycles = 0
        self.hot = False
        self.started = False
        self.first_time = 0.0
        self.last_time = 0.0
        self.last_value = 0.0
        self.peak = 0.0
        self.peak_time = 0.0
        self.exceeded_at = INFINITY
        self.changed = True

    @property
    def bands(self):
        return [self._bands[k] for k in range(self.n_bands)]

    cdef inline Py_ssize_t _band_of(self, double celsius) noexcept nogil:
        cdef double k = floor(celsius / self.band) - self.first_band
        if k < 0:
            return 0
        if k > self.n_bands - 1:
            return self.n_bands - 1
        return <Py_ssize_t> k

    def band_of(self, double celsius):
        return self._band_of(celsius)

    cdef inline void _check_limits(self, double t) noexcept nogil:
        if self.exceeded_at == INFINITY and (
                (self.limit_seconds > 0.0 and self.seconds_above > self.limit_seconds)
                or (self.limit_cycles > 0 and self.cycles > self.limit_cycles)):
            self.exceeded_at = t

    cdef Py_ssize_t run(self, double* tp, double* vp, unsigned char* qp, unsigned char* rp, const double* cj,
                        Py_ssize_t n) noexcept nogil:
        cdef Py_ssize_t i, k
        cdef double t, x, dt
        for i in range(n):
            if qp[i] == BAD:
                continue
            t = tp[i]
            if self.counting and t >= self.life_start and (not self.started or t > self.last_time):
                x = vp[i]
                if self.started:
                    dt = t - self.last_time
                    if dt <= self.max_gap:
                        k = self._band_of(self.last_value)
                        self._bands[k] = self._bands[k] + dt
                        if self.last_value >= self.limit_above:
                            self.seconds_above = self.seconds_above + dt
                    else:
                        self.unaccounted = self.unaccounted + dt
                else:
                    self.first_time = t
                if not self.started or x > self.peak:
                    self.peak = x
                    self.peak_time = t
                if self.hot:
                    if x < self.cycle_above - self.hysteresis:
                        self.hot = False
                elif x >= self.cycle_above:
                    self.hot = True
                    self.cycles += 1
                self.started = True
                self.last_time = t
                self.last_value = x
                self.changed = True
                self._check_limits(t)
            if t >= self.exceeded_at:
                lower_to(qp, rp, i, self.over_quality, R_USAGE_LIMIT)
        return n

    def state(self):
        return {
            "band": self.band, "cycle_above": self.cycle_above, "hysteresis": self.hysteresis,
            "limit_above": self.limit_above, "max_gap": self.max_gap, "life_start": self.life_start,
            "started": self.started, "first_time": self.first_time, "last_time": self.last_time,
            "last_value": self.last_value, "seconds_above": self.seconds_above, "unaccounted": self.unaccounted,
            "cycles": self.cycles, "hot": self.hot, "peak": self.peak, "peak_time": self.peak_time,
            "exceeded_at": self.exceeded_at,
            "bands": {(k + self.first_band) * self.band: self._bands[k] for k in range(self.n_bands) if self._bands[k]},
        }

    def load(self, state):
        self._counted_as(float(state["band"]), float(state["cycle_above"]), float(state["hysteresis"]),
                         float(state["limit_above"]), float(state["max_gap"]))
        self.reset(float(state["life_start"]))
        for edge, seconds in state["bands"].items():
            self._bands[self._band_of(float(edge) + 0.5 * self.band)] = float(seconds)
        self.started = bool(state["started"])
        self.first_time = float(state["first_time"])
        self.last_time = float(state["last_time"])
        self.last_value = float(state["last_value"])
        self.seconds_above = float(state["seconds_above"])
        self.unaccounted = float(state["unaccounted"])
        self.cycles = int(state["cycles"])
        self.hot = bool(state["hot"])
        self.peak = float(state["peak"])
        self.peak_time = float(state["peak_time"])
        self.exceeded_at = INFINITY
        if self.started:
            self._check_limits(self.last_time)
            if self.exceeded_at != INFINITY:
                self.exceeded_at = min(self.last_time, float(state["exceeded_at"]))
        self.changed = False


# ---------------------------------------------------------------- batches of frames (Processor.process)

include "_batch.pxi"
