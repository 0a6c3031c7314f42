# CIDEr-D on the compiled engine (fastcap/_kernels/engine/cider.c), included by
# cython_backend.pyx: ``cider_df`` builds the document frequencies of a reference corpus
# into a hash table owned by a ``CiderTable`` (freed with it), ``cider_d`` scores
# candidates against references with it, candidates split over the engine's pool.
#
# The wrappers check every start, range and word id the C code indexes with (O(size of
# the captions) work, a small part of scoring them), so inconsistent arguments raise
# ValueError instead of reaching memory.

cdef extern from "engine/engine.h" nogil:
    ctypedef struct fc_cider_table:
        size_t count
        Py_ssize_t images
    int fc_cider_df(fc_cider_table *t, const Py_ssize_t *tokens, const Py_ssize_t *starts,
                    const Py_ssize_t *images, Py_ssize_t I, int nthreads)
    void fc_cider_free(fc_cider_table *t)
    int fc_cider_d(const fc_cider_table *t, const Py_ssize_t *cand_tokens,
                   const Py_ssize_t *cand_starts, Py_ssize_t K, const Py_ssize_t *ref_tokens,
                   const Py_ssize_t *ref_starts, const Py_ssize_t *refs, Py_ssize_t longest,
                   double *scores, int nthreads)

# An n-gram key holds each word id + 1 in 32 bits; the table counts images in int32.
_MAX_WORD = (1 << 32) - 2
_MAX_IMAGES = (1 << 31) - 2


cdef class CiderTable:
    """cider_df's table: the document frequencies of a reference corpus's n-grams, in C."""

    cdef fc_cider_table t
    cdef readonly Py_ssize_t images  # I, the corpus's images

    @property
    def ngrams(self):
        """How many distinct n-grams the corpus has."""
        return self.t.count

    def __dealloc__(self):
        fc_cider_free(&self.t)


cdef Py_ssize_t _captions(str kernel, str name, const Py_ssize_t[::1] tokens,
                          const Py_ssize_t[::1] starts) except -1:
    """Check a caption set (tokens, starts); returns its longest caption's words."""
    t, s = np.asarray(tokens), np.asarray(starts)
    if s.shape[0] < 1 or s[0] < 0 or s[s.shape[0] - 1] > t.shape[0] or (np.diff(s) < 0).any():
        raise ValueError(f"{kernel}: {name} starts must be non-decreasing offsets into its "
                         f"{t.shape[0]} tokens, starting at 0 or more")
    if t.shape[0] and (t.min() < 0 or t.max() > _MAX_WORD):
        raise ValueError(f"{kernel}: {name} tokens must be word ids in [0, {_MAX_WORD}]")
    return int(np.diff(s).max()) if s.shape[0] > 1 else 0


def cider_df(const Py_ssize_t[::1] tokens,  # IN (T,) word ids of the reference captions
             const Py_ssize_t[::1] starts,  # IN (C+1,) caption c is tokens[starts[c]:starts[c+1]]
             const Py_ssize_t[::1] images):  # IN (I+1,) image i's references: captions images[i]:images[i+1]
    _captions("cider_df", "reference", tokens, starts)
    im, C = np.asarray(images), starts.shape[0] - 1
    if (im.shape[0] < 1 or im.shape[0] - 1 > _MAX_IMAGES or im[0] < 0 or im[im.shape[0] - 1] > C
            or (np.diff(im) < 0).any()):
        raise ValueError(f"cider_df: images must be at most {_MAX_IMAGES + 1} non-decreasing offsets "
                         f"into the {C} captions")
    cdef CiderTable table = CiderTable.__new__(CiderTable)
    cdef Py_ssize_t I = im.shape[0] - 1
    cdef const Py_ssize_t *tok = &tokens[0] if tokens.shape[0] else NULL
    cdef int rc, nth = _engine_threads
    with nogil:
        rc = fc_cider_df(&table.t, tok, &starts[0], &images[0], I, nth)
    if rc != 0:
        raise MemoryError(f"cider_df: out of memory counting the n-grams of {C} captions")
    table.images = I
    return table


def cider_d(table,  # IN cider_df's CiderTable: the document frequencies
            const Py_ssize_t[::1] cand_tokens,  # IN (T,) word ids of the K candidates
            const Py_ssize_t[::1] cand_starts,  # IN (K+1,)
            const Py_ssize_t[::1] ref_tokens,  # IN (T',) word ids of the references
            const Py_ssize_t[::1] ref_starts,  # IN (R+1,)
            const Py_ssize_t[:, ::1] refs,  # IN (K, 2) candidate k's references: [refs[k,0], refs[k,1])
            double[::1] scores_out):  # OUT (K,) CIDEr-D of each candidate
    if not isinstance(table, CiderTable):
        raise TypeError(f"cider_d: table must be this backend's cider_df table, got {type(table).__name__}")
    cdef CiderTable tab = table
    cdef Py_ssize_t K = cand_starts.shape[0] - 1, R = ref_starts.shape[0] - 1
    longest = max(_captions("cider_d", "candidate", cand_tokens, cand_starts),
                  _captions("cider_d", "reference", ref_tokens, ref_starts))
    r = np.asarray(refs)
    if r.shape[0] != K or r.shape[1] != 2 or scores_out.shape[0] != K:
        raise ValueError(f"cider_d: refs must have shape ({K}, 2) and scores_out ({K},), one row per "
                         f"candidate; got {r.shape[:2]} and {scores_out.shape[0]}")
    if K and (r[:, 0].min() < 0 or r[:, 1].max() > R or (r[:, 1] <= r[:, 0]).any()):
        raise ValueError(f"cider_d: every candidate needs a non-empty range of the {R} references")
    if K == 0:
        return
    cdef const Py_ssize_t *ct = &cand_tokens[0] if cand_tokens.shape[0] else NULL
    cdef const Py_ssize_t *rt = &ref_tokens[0] if ref_tokens.shape[0] else NULL
    cdef Py_ssize_t most = longest
    cdef int rc, nth = _engine_threads
    with nogil:
        rc = fc_cider_d(&tab.t, ct, &cand_starts[0], K, rt, &ref_starts[0], &refs[0, 0], most,
                        &scores_out[0], nth)
    if rc != 0:
        raise MemoryError(f"cider_d: out of memory scoring {K} candidates")
