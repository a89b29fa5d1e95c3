/* logscan.c: a single-pass scanner for regular Caffe training logs (caffegen's native parse path).
 *
 * SPDX-License-Identifier: BSD-2-Clause
 * Copyright (c) 2026 the caffegen authors.
 *
 * Loaded through ctypes by caffegen/logs/native/__init__.py; no Python C-API. It walks the bytes of a log once and
 * builds the train and test tables exactly as caffegen.logs.reference.Builder's per-line handlers do, for the regular
 * subset of logs it models. Anything outside that subset makes ls_scan_file() return a nonzero DECLINE code, and the
 * caller reads the log another way: this code never guesses. What it declines (see scan_lines, line_done, head, output):
 *   non-ASCII bytes, \r, NUL; a line as long as max_line; a line starting with 'F'; fatal or old-layout markers
 *   ("Check failed", "***", "terminate called", "core dumped", "Segmentation fault", "Test score #",
 *   "Test loss: "); two "Iteration " or two " net output #" on a line, or both; "Solving ", "fault" or odd
 *   whitespace (\t \v \f \x1c-\x1f) on a head or output line; a head or output not in the exact form the
 *   handlers read; a number not in the strict grammar below; an unreadable timestamp on a row-opening line;
 *   a month going back in year-less glog prefixes (a possible year roll-over); train and test outputs between
 *   the same two heads; no head at all; loss lines without any train output (very old Caffe).
 * Numbers: [+-]?(D+(.D*)?|.D+)([eE][+-]?D+)? read correctly rounded (Clinger's exact fast path, else
 * strtod_l in the C locale, which glibc rounds correctly), and nan, -nan, inf, -inf: what Python's float()
 * gives for the same text. Cells are written back from the log's own text when it is a JSON number (it reads
 * back to the same double), else from the shortest %.{15,16,17}g text that reads back to it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#define LS_OK 0
#define LS_DECLINE 1
#define LS_NOMEM 2

typedef struct {
    char *name;        /* the column name, NUL-terminated ("loss", "loss@net1") */
    char *raw;         /* the output name as logged */
    size_t rawlen;
    int64_t net;       /* test net number (0 for train and net #0) */
    double *val;
    uint32_t *toff;
    uint8_t *tlen;
    uint8_t *present;
} col_t;

typedef struct {
    int64_t n, cap;
    int64_t *it, *secus, *seg;
    double *lr;
    uint32_t *lroff;
    uint8_t *lrlen;   /* 0: no lr yet (nan) */
    col_t *cols;
    int ncols, capcols, hint;
    int64_t cur_it, cur_seg;
} table_t;

typedef struct {  /* the last number text read in one place, its value and where its written text is */
    char text[64];
    size_t n;
    double v;
    int flags, stored;
    uint32_t off;
    uint8_t len;
} numcache_t;

typedef struct {
    table_t t[2];     /* 0 train, 1 test */
    char *arena;
    size_t alen, acap;
    uint32_t last_off;
    uint8_t last_len;
    int64_t *loss_it;
    double *loss_v;
    int64_t nloss, capl;
    int64_t year, max_month, start_us, has_start, max_iter, iteration, segment, test_net, started, any_row;
    int64_t nonfinite, nheads, decline_line, tail_kind;
    double first_loss, last_loss;
    double lr;
    uint32_t lroff;
    uint8_t lrlen;
    numcache_t last, lrc;  /* the last number read (a loss line and its output repeat it), the last lr */
    /* timestamp cache: the last minute key parsed */
    char key[32];
    size_t keylen;
    int64_t keybase;
    int keymonth, keyyearless;
} ctx_t;

static locale_t c_locale;

static double c_strtod(const char *s) {  /* Python's float() reads '.' whatever the process locale says */
#ifdef __GLIBC__
    if (c_locale) return strtod_l(s, NULL, c_locale);
#endif
    return strtod(s, NULL);
}

/* ------------------------------------------------------------------------------------------- numbers */
static const double P10[23] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
                               1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static int isdig(int c) { return c >= '0' && c <= '9'; }

#define NUM_JSON 1      /* the text is a JSON number */
#define NUM_INTEGRAL 2  /* ...without a fraction or an exponent ("2": written "2.0", as a float) */

/* The strict number grammar; 1 with *v as Python's float(text) gives it (and *flags), 0 when the text is
 * outside it. */
static int parse_num(const char *s, size_t n, double *v, int *flags) {
    if (n == 0 || n > 64) return 0;
    char c0 = s[0];
    if (c0 == 'n' || c0 == 'i' || (c0 == '-' && n > 1 && (s[1] == 'n' || s[1] == 'i'))) {
        *flags = 0;
        if (n == 3 && !memcmp(s, "nan", 3)) { *v = NAN; return 1; }
        if (n == 4 && !memcmp(s, "-nan", 4)) { *v = -NAN; return 1; }
        if (n == 3 && !memcmp(s, "inf", 3)) { *v = INFINITY; return 1; }
        if (n == 4 && !memcmp(s, "-inf", 4)) { *v = -INFINITY; return 1; }
        return 0;
    }
    const char *p = s, *e = s + n;
    int neg = c0 == '-';
    if (c0 == '-' || c0 == '+') p++;
    const char *d0 = p;
    uint64_t m = 0;
    while (p < e && (unsigned)(*p - '0') < 10) { m = m * 10 + (uint64_t)(*p - '0'); p++; }
    int nint = (int)(p - d0), frac = 0, dot = 0;
    if (p < e && *p == '.') {
        dot = 1;
        const char *f0 = ++p;
        while (p < e && (unsigned)(*p - '0') < 10) { m = m * 10 + (uint64_t)(*p - '0'); p++; }
        frac = (int)(p - f0);
    }
    if (nint + frac == 0) return 0;
    int64_t ex = 0;
    int has_exp = 0;
    if (p < e && (*p == 'e' || *p == 'E')) {
        has_exp = 1;
        p++;
        int eneg = 0, ed = 0;
        if (p < e && (*p == '+' || *p == '-')) { eneg = *p == '-'; p++; }
        while (p < e && (unsigned)(*p - '0') < 10) { if (ed < 6) ex = ex * 10 + (*p - '0'); ed++; p++; }
        if (ed == 0) return 0;
        if (ed >= 6) ex = 999999;
        if (eneg) ex = -ex;
    }
    if (p != e) return 0;
    *flags = (c0 != '+' && nint >= 1 && !(nint > 1 && d0[0] == '0') && !(dot && frac == 0) ? NUM_JSON : 0) |
             (!dot && !has_exp ? NUM_INTEGRAL : 0);
    int64_t e10 = ex - frac;
    if (nint + frac <= 19 && m <= (1ULL << 53) && e10 >= -22 && e10 <= 22) {  /* exact operands: one rounding */
        double d = (double)m;
        d = e10 < 0 ? d / P10[-e10] : d * P10[e10];
        *v = neg ? -d : d;
        return 1;
    }
    char buf[72];
    memcpy(buf, s, n);
    buf[n] = 0;
    *v = c_strtod(buf);
    return 1;
}

/* ------------------------------------------------------------------------------------------ storage */

static int arena_put(ctx_t *c, const char *s, size_t n, uint32_t *off, uint8_t *len) {
    if (c->last_len == n && c->alen && !memcmp(c->arena + c->last_off, s, n)) {
        *off = c->last_off; *len = (uint8_t)n; return 1;
    }
    if (c->alen + n > c->acap) {
        size_t cap = c->acap ? c->acap * 2 : (1 << 20);
        while (cap < c->alen + n) cap *= 2;
        if (cap > 0xFFFFFFF0u) return 0;
        char *a = realloc(c->arena, cap);
        if (!a) return 0;
        c->arena = a; c->acap = cap;
    }
    memcpy(c->arena + c->alen, s, n);
    *off = c->last_off = (uint32_t)c->alen;
    *len = c->last_len = (uint8_t)n;
    c->alen += n;
    return 1;
}

/* The text a cell is written with: the log's own when it is a JSON number ("2" as "2.0"), else a shortest
 * %.Ng that reads back to v; nan/inf as nan, inf, -inf. */
static int store_text(ctx_t *c, const char *s, size_t n, double v, int flags, uint32_t *off, uint8_t *len) {
    char buf[80];
    if (isnan(v)) return arena_put(c, "nan", 3, off, len);
    if (isinf(v)) return v > 0 ? arena_put(c, "inf", 3, off, len) : arena_put(c, "-inf", 4, off, len);
    if (flags & NUM_JSON) {
        if (flags & NUM_INTEGRAL) {
            if (n + 2 > sizeof buf) return 0;
            memcpy(buf, s, n);
            memcpy(buf + n, ".0", 2);
            return arena_put(c, buf, n + 2, off, len);
        }
        return arena_put(c, s, n, off, len);
    }
    int k = 0;
    for (int prec = 15; prec <= 17; prec++) {
        k = snprintf(buf, sizeof buf - 3, "%.*g", prec, v);
        if (c_strtod(buf) == v) break;
    }
    if (!strpbrk(buf, ".e")) { memcpy(buf + k, ".0", 3); k += 2; }
    return arena_put(c, buf, (size_t)k, off, len);
}

/* A number at s[0:n): 1 and *v (and where its written text is, when off is given), 0 when outside the
 * grammar, -1 out of memory. The same text as last time in this cache is neither read nor stored again. */
static int number(ctx_t *c, numcache_t *k, const char *s, size_t n, double *v, uint32_t *off, uint8_t *len) {
    if (n == 0 || k->n != n || memcmp(k->text, s, n)) {  /* (an empty text is never a number) */
        if (!parse_num(s, n, &k->v, &k->flags)) return 0;
        memcpy(k->text, s, n);
        k->n = n;
        k->stored = 0;
    }
    *v = k->v;
    if (off) {
        if (!k->stored) {
            if (!store_text(c, s, n, k->v, k->flags, &k->off, &k->len)) return -1;
            k->stored = 1;
        }
        *off = k->off;
        *len = k->len;
    }
    return 1;
}

static int table_grow(table_t *t) {
    int64_t cap = t->cap ? t->cap * 2 : 4096;
#define GROW(p, T) do { T *q = realloc(p, (size_t)cap * sizeof(T)); if (!q) return 0; p = q; } while (0)
    GROW(t->it, int64_t); GROW(t->secus, int64_t); GROW(t->seg, int64_t);
    GROW(t->lr, double); GROW(t->lroff, uint32_t); GROW(t->lrlen, uint8_t);
    for (int k = 0; k < t->ncols; k++) {
        col_t *col = &t->cols[k];
        GROW(col->val, double); GROW(col->toff, uint32_t); GROW(col->tlen, uint8_t); GROW(col->present, uint8_t);
        memset(col->present + t->cap, 0, (size_t)(cap - t->cap));
    }
#undef GROW
    t->cap = cap;
    return 1;
}

static col_t *find_col(table_t *t, const char *name, size_t n, int64_t net, int *dup) {
    for (int j = 0; j < t->ncols; j++) {
        int k = (t->hint + j) % t->ncols;
        col_t *col = &t->cols[k];
        if (col->rawlen == n && col->net == net && !memcmp(col->raw, name, n)) {
            t->hint = (k + 1) % t->ncols;
            return col;
        }
    }
    if (t->ncols == t->capcols) {
        int cap = t->capcols ? t->capcols * 2 : 16;
        col_t *q = realloc(t->cols, (size_t)cap * sizeof(col_t));
        if (!q) return NULL;
        t->cols = q; t->capcols = cap;
    }
    col_t *col = &t->cols[t->ncols];
    memset(col, 0, sizeof *col);
    col->raw = malloc(n + 1);
    col->name = malloc(n + 32);
    if (!col->raw || !col->name) { free(col->raw); free(col->name); return NULL; }
    memcpy(col->raw, name, n); col->raw[n] = 0;
    col->rawlen = n; col->net = net;
    if (net) snprintf(col->name, n + 32, "%s@net%lld", col->raw, (long long)net);
    else memcpy(col->name, col->raw, n + 1);
    for (int j = 0; j < t->ncols; j++) {  /* "a@net1" logged by net #0 and "a" by net #1: one column in Python */
        if (!strcmp(t->cols[j].name, col->name)) { free(col->raw); free(col->name); *dup = 1; return NULL; }
    }
    size_t cap = (size_t)(t->cap ? t->cap : 1);
    col->val = malloc(cap * sizeof(double));
    col->toff = malloc(cap * sizeof(uint32_t));
    col->tlen = malloc(cap);
    col->present = calloc(cap, 1);
    if (!col->val || !col->toff || !col->tlen || !col->present) {
        free(col->val); free(col->toff); free(col->tlen); free(col->present); free(col->raw); free(col->name);
        return NULL;
    }
    t->ncols++;
    t->hint = 0;
    return col;
}

/* ------------------------------------------------------------------------------------------ timestamps */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d) {  /* Python's date.toordinal() */
    static const int before[13] = {0, 0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334};
    int64_t y1 = y - 1;
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return y1 * 365 + y1 / 4 - y1 / 100 + y1 / 400 + before[m] + (m > 2 && leap) + d;
}

static int month_days(int64_t y, int64_t m) {
    static const int dim[13] = {0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : dim[m];
}

static int64_t digits(const char *s, int n) {
    int64_t v = 0;
    for (int i = 0; i < n; i++) v = v * 10 + (s[i] - '0');
    return v;
}

/* _Clock.micros(prefix) for p[0:n): 1 and *us, 0 for None, -1 when the month went back in a year-less prefix
 * (the Python clock might roll the year over: decline). */
static int micros(ctx_t *c, const char *p, size_t n, int64_t *us) {
    size_t sp = 1;
    while (sp < n && p[sp] != ' ') sp++;
    if (sp >= n) return 0;
    if (n < sp + 6) return 0;
    size_t kl = sp + 6;
    int64_t base;
    if (kl == c->keylen && !memcmp(p, c->key, kl)) {
        base = c->keybase;
    } else {
        if (p[0] != 'I' && p[0] != 'W' && p[0] != 'E' && p[0] != 'F') return 0;
        size_t dl = sp - 1;
        if (dl != 4 && dl != 8) return 0;
        for (size_t i = 1; i < sp; i++) if (!isdig(p[i])) return 0;
        const char *h = p + sp + 1;
        if (h[2] != ':' || !isdig(h[0]) || !isdig(h[1]) || !isdig(h[3]) || !isdig(h[4])) return 0;
        int64_t year, month, day;
        if (dl == 8) {
            year = digits(p + 1, 4); month = digits(p + 5, 2); day = digits(p + 7, 2);
        } else {
            month = digits(p + 1, 2); day = digits(p + 3, 2);
            if (month < c->max_month) return -1;
            year = c->year;
        }
        int64_t hh = digits(h, 2), mm = digits(h + 3, 2);
        if (year < 1 || year > 9999 || month < 1 || month > 12 || day < 1 || day > month_days(year, month) ||
            hh > 23 || mm > 59)
            return 0;
        if (dl == 4 && month > c->max_month) c->max_month = month;
        base = (days_from_civil(year, month, day) * 86400 + hh * 3600 + mm * 60) * 1000000;
        if (kl < sizeof c->key) { memcpy(c->key, p, kl); c->keylen = kl; c->keybase = base; }
    }
    if (n < sp + 16 || p[sp + 6] != ':' || p[sp + 9] != '.') return 0;
    const char *s = p + sp + 7;
    if (!isdig(s[0]) || !isdig(s[1])) return 0;
    for (int i = 3; i < 9; i++) if (!isdig(s[i])) return 0;
    *us = base + digits(s, 2) * 1000000 + digits(s + 3, 6);
    return 1;
}

/* ------------------------------------------------------------------------------------------- the scan */
#define DECLINE(line) do { c->decline_line = (line); return LS_DECLINE; } while (0)

enum { K_NONE = 0, K_NL, K_BAD, K_WS, K_I, K_HASH, K_S, K_T, K_C, K_STAR, K_F, K_D };
static uint8_t cls[256];

static void init_cls(void) {
    for (int i = 0; i < 256; i++) cls[i] = i >= 0x80 ? K_BAD : K_NONE;
    cls['\n'] = K_NL; cls['\r'] = K_BAD; cls[0] = K_BAD;
    cls['\t'] = cls['\v'] = cls['\f'] = K_WS;
    for (int i = 0x1c; i <= 0x1f; i++) cls[i] = K_WS;
    cls['I'] = K_I; cls['#'] = K_HASH; cls['S'] = K_S; cls['s'] = K_T; cls['C'] = K_C; cls['*'] = K_STAR;
    cls['f'] = K_F; cls['e'] = K_D;
}

static int open_row(ctx_t *c, table_t *t, const char *line, size_t pout, int64_t lineno) {
    int64_t us;
    int r = micros(c, line, pout, &us);
    if (r != 1) DECLINE(lineno);
    if (!c->has_start) { c->start_us = us; c->has_start = 1; }
    if (t->n == t->cap && !table_grow(t)) return LS_NOMEM;
    int64_t i = t->n++;
    t->it[i] = c->iteration;
    t->secus[i] = us - c->start_us;
    t->seg[i] = c->segment;
    t->lr[i] = c->lr;
    t->lroff[i] = c->lroff;
    t->lrlen[i] = c->lrlen;
    t->cur_it = c->iteration;
    t->cur_seg = c->segment;
    c->any_row = 1;
    return LS_OK;
}

static const char *strip(const char *s, const char *e, const char **end) {
    while (s < e && *s == ' ') s++;
    while (e > s && e[-1] == ' ') e--;
    *end = e;
    return s;
}

static int all_digits(const char *s, const char *e) {
    for (; s < e; s++) if (!isdig(*s)) return 0;
    return 1;
}

static int head(ctx_t *c, const char *h, const char *le, int64_t lineno) {
    const char *q = h;
    while (q < le && isdig(*q)) q++;
    size_t nd = (size_t)(q - h);
    if (nd == 0 || nd > 18 || q == le) DECLINE(lineno);  /* digits only: read without its last digit */
    int64_t it = digits(h, (int)nd);
    const char *loss = NULL, *lr = NULL, *tn = NULL, *lr_end = NULL;
    /* the usual heads first: ", loss = X", ", lr = X", ", Testing net (#k)" with nothing after them (X a number
     * has no "loss = " in it: this is then the last "loss = ", or the only "lr = " and no "loss = ") */
    size_t rest = (size_t)(le - q);
    if (rest > 9 && !memcmp(q, ", loss = ", 9)) {
        loss = q + 2;
    } else if (rest > 7 && !memcmp(q, ", lr = ", 7) && !memchr(q + 7, ',', rest - 7) && !memchr(q + 7, 'l', rest - 7)) {
        lr = q + 2;
        lr_end = le;
    } else if (rest > 17 && !memcmp(q, ", Testing net (#", 16) && le[-1] == ')' && all_digits(q + 16, le - 1)) {
        tn = q + 2;
    } else {
        for (const char *p = q; p < le; p++) {
            if (*p == 'l') {
                if (le - p >= 7 && !memcmp(p, "loss = ", 7)) loss = p;
                else if (!lr && le - p >= 5 && !memcmp(p, "lr = ", 5)) lr = p;
            } else if (*p == 'T' && !tn && le - p >= 11 && !memcmp(p, "Testing net", 11)) {
                tn = p;
            }
        }
    }
    if (it < c->iteration) {
        if (c->any_row) c->segment++;
        c->iteration = -1;
    }
    c->iteration = it;
    c->started = 1;
    c->nheads++;
    c->tail_kind = 0;
    if (it > c->max_iter) c->max_iter = it;
    const char *s, *e;
    double v;
    int r;
    if (loss) {
        s = strip(loss + 7, le, &e);
        r = number(c, &c->last, s, (size_t)(e - s), &v, NULL, NULL);
        if (r == 0) DECLINE(lineno);
        if (c->nloss == 0) c->first_loss = v;
        c->last_loss = v;
        if (!isfinite(v)) c->nonfinite = 1;
        if (c->nloss == c->capl) {
            int64_t cap = c->capl ? c->capl * 2 : 4096;
            int64_t *a = realloc(c->loss_it, (size_t)cap * sizeof(int64_t));
            if (!a) return LS_NOMEM;
            c->loss_it = a;
            double *b = realloc(c->loss_v, (size_t)cap * sizeof(double));
            if (!b) return LS_NOMEM;
            c->loss_v = b;
            c->capl = cap;
        }
        c->loss_it[c->nloss] = it;
        c->loss_v[c->nloss++] = v;
    } else if (lr) {
        if (!lr_end) {
            const char *comma = memchr(lr + 5, ',', (size_t)(le - lr - 5));
            lr_end = comma ? comma : le;
        }
        s = strip(lr + 5, lr_end, &e);
        r = number(c, &c->lrc, s, (size_t)(e - s), &v, &c->lroff, &c->lrlen);
        if (r == 0) DECLINE(lineno);
        if (r < 0) return LS_NOMEM;
        c->lr = v;
        table_t *tr = &c->t[0];  /* a train row opened before any lr was printed takes its own block's lr */
        int64_t last = tr->n - 1;
        if (last >= 0 && tr->cur_it == it && tr->cur_seg == c->segment && isnan(tr->lr[last])) {
            tr->lr[last] = v; tr->lroff[last] = c->lroff; tr->lrlen[last] = c->lrlen;
        }
    } else if (tn) {
        const char *p = tn + 11;
        if (le - p < 4 || memcmp(p, " (#", 3)) DECLINE(lineno);
        p += 3;
        const char *d = p;
        while (p < le && isdig(*p)) p++;
        if (p == d || p - d > 9 || p >= le || *p != ')') DECLINE(lineno);
        c->test_net = digits(d, (int)(p - d));
    }
    return LS_OK;
}

static int output(ctx_t *c, const char *ls, const char *le, size_t pout, int64_t lineno) {
    int kind;
    if (pout >= 5 && !memcmp(ls + pout - 5, "Train", 5)) kind = 1;
    else if (pout >= 4 && !memcmp(ls + pout - 4, "Test", 4)) kind = 2;
    else DECLINE(lineno);
    const char *p = ls + pout + 13, *d = p;
    while (p < le && isdig(*p)) p++;
    if (p == d || le - p < 2 || p[0] != ':' || p[1] != ' ') DECLINE(lineno);
    const char *name = p + 2;
    p = name;
    while (p < le && *p != ' ') p++;
    if (p == name || le - p < 3 || memcmp(p, " = ", 3)) DECLINE(lineno);
    size_t nlen = (size_t)(p - name);
    const char *val = p + 3;
    p = val;
    while (p < le && *p != ' ') p++;
    size_t vlen = (size_t)(p - val);
    double v;
    uint32_t toff;
    uint8_t tlen;
    int nr = number(c, &c->last, val, vlen, &v, &toff, &tlen);
    if (nr == 0) DECLINE(lineno);
    if (nr < 0) return LS_NOMEM;
    if (c->tail_kind && c->tail_kind != kind) DECLINE(lineno);  /* one kind of output between two heads */
    c->tail_kind = kind;
    table_t *t = &c->t[kind - 1];
    if (t->n == 0 || t->cur_it != c->iteration || t->cur_seg != c->segment) {
        int r = open_row(c, t, ls, pout, lineno);
        if (r) return r;
    }
    int dup = 0;
    col_t *col = find_col(t, name, nlen, kind == 2 ? c->test_net : 0, &dup);
    if (dup) DECLINE(lineno);
    if (!col) return LS_NOMEM;
    int64_t i = t->n - 1;
    if (kind == 1 && !isfinite(v)) c->nonfinite = 1;
    col->val[i] = v;
    col->present[i] = 1;
    col->toff[i] = toff;
    col->tlen[i] = tlen;
    return LS_OK;
}

void *ls_new(void) {
    ctx_t *c = calloc(1, sizeof(ctx_t));
    return c;
}

void ls_free(void *vc) {
    ctx_t *c = vc;
    if (!c) return;
    for (int k = 0; k < 2; k++) {
        table_t *t = &c->t[k];
        free(t->it); free(t->secus); free(t->seg); free(t->lr); free(t->lroff); free(t->lrlen);
        for (int j = 0; j < t->ncols; j++) {
            col_t *col = &t->cols[j];
            free(col->name); free(col->raw); free(col->val); free(col->toff); free(col->tlen); free(col->present);
        }
        free(t->cols);
    }
    free(c->arena); free(c->loss_it); free(c->loss_v);
    free(c);
}

/* One whole line [ls, le) with what the byte scan found on it. */
typedef struct {
    const char *pit, *pout;
    int nit, nout, solving, rare, ws;
} linefl_t;

static int line_done(ctx_t *c, const char *ls, const char *le, linefl_t *f, int64_t lineno, int64_t max_line) {
    if (*ls == 'F') DECLINE(lineno);
    if (le - ls >= max_line) DECLINE(lineno);
    if (f->nit + f->nout > 1) DECLINE(lineno);
    if ((f->nit || f->nout) && (f->solving || f->rare || f->ws)) DECLINE(lineno);
    if (f->nit) return head(c, f->pit + 10, le, lineno);
    if (f->nout) return c->started ? output(c, ls, le, (size_t)(f->pout - ls), lineno) : LS_OK;
    if (f->solving) {
        if (f->ws) DECLINE(lineno);
        int64_t us;
        int m = micros(c, ls, (size_t)(le - ls), &us);
        if (m < 0) DECLINE(lineno);
        if (m == 1 && !c->has_start) { c->start_us = us; c->has_start = 1; }
        if (c->any_row) c->segment++;
        c->iteration = -1;
        c->tail_kind = 0;
    }
    return LS_OK;
}

/* Bit i set: byte i of the 16 at p may start (or, for "s:" and "ed", sit inside) something that matters: a
 * control or non-ASCII byte, "It" (Iteration), '#' (net output, Test score), 'S' (Solving, Segmentation
 * fault), "s:" (Test loss:), 'C' (Check failed), "**", 'f' (fault), "ed" (terminate called, core dumped).
 * Pairs, not single letters, where the letter is on every line (the glog 'I', "(* 1 = ...)", "sgd_solver").
 * p[16] is read too (the pairs): the caller guarantees it exists. */
static inline unsigned hits16(const char *p) {
#ifdef __SSE2__
    __m128i v = _mm_loadu_si128((const __m128i *)p);
    __m128i w = _mm_loadu_si128((const __m128i *)(p + 1));
    __m128i m = _mm_cmplt_epi8(v, _mm_set1_epi8(0x20));  /* signed: < 0x20 and >= 0x80 */
    m = _mm_or_si128(m, _mm_and_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('I')), _mm_cmpeq_epi8(w, _mm_set1_epi8('t'))));
    m = _mm_or_si128(m, _mm_cmpeq_epi8(v, _mm_set1_epi8('#')));
    m = _mm_or_si128(m, _mm_cmpeq_epi8(v, _mm_set1_epi8('S')));
    m = _mm_or_si128(m, _mm_and_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('s')), _mm_cmpeq_epi8(w, _mm_set1_epi8(':'))));
    m = _mm_or_si128(m, _mm_cmpeq_epi8(v, _mm_set1_epi8('C')));
    m = _mm_or_si128(m, _mm_and_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('*')), _mm_cmpeq_epi8(w, _mm_set1_epi8('*'))));
    m = _mm_or_si128(m, _mm_cmpeq_epi8(v, _mm_set1_epi8('f')));
    m = _mm_or_si128(m, _mm_and_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('e')), _mm_cmpeq_epi8(w, _mm_set1_epi8('d'))));
    return (unsigned)_mm_movemask_epi8(m);
#else
    unsigned bits = 0;  /* every byte of a class: the handlers check the pairs themselves */
    for (int i = 0; i < 16; i++) if (cls[(uint8_t)p[i]]) bits |= 1u << i;
    return bits;
#endif
}

/* One byte the block scan found: a newline ends the line (processed), anything else may mark it. */
static inline __attribute__((always_inline)) int hit(ctx_t *c, const char *p, const char **lsp, linefl_t *f, const char *end, int64_t *lineno,
                      int64_t max_line) {
    switch (cls[(uint8_t)*p]) {
    case K_NL: {
        ++*lineno;
        int r = line_done(c, *lsp, p, f, *lineno, max_line);
        if (r) return r;
        memset(f, 0, sizeof *f);
        *lsp = p + 1;
        break;
    }
    case K_BAD: DECLINE(*lineno + 1);
    case K_WS: f->ws = 1; break;
    case K_I:  /* "It" */
        if (end - p >= 10 && !memcmp(p + 1, "teration ", 9)) { f->pit = p; f->nit++; }
        break;
    case K_HASH:
        if (p - *lsp >= 12 && !memcmp(p - 12, " net output ", 12)) { f->pout = p - 12; f->nout++; }
        else if (p - *lsp >= 11 && !memcmp(p - 11, "Test score ", 11)) DECLINE(*lineno + 1);
        break;
    case K_S:
        if (end - p >= 8 && !memcmp(p + 1, "olving ", 7)) f->solving = 1;
        else if (end - p >= 18 && !memcmp(p + 1, "egmentation fault", 17)) DECLINE(*lineno + 1);
        break;
    case K_T:  /* "s:" */
        if (p - *lsp >= 8 && !memcmp(p - 8, "Test loss:", 10)) DECLINE(*lineno + 1);
        break;
    case K_C:
        if (end - p >= 12 && !memcmp(p + 1, "heck failed", 11)) DECLINE(*lineno + 1);
        break;
    case K_STAR:
        if (end - p >= 3 && p[1] == '*' && p[2] == '*') DECLINE(*lineno + 1);
        break;
    case K_F:
        if (end - p >= 5 && !memcmp(p + 1, "ault", 4)) f->rare = 1;
        break;
    case K_D:  /* "ed" */
        if (p - *lsp >= 14 && !memcmp(p - 14, "terminate called", 16)) DECLINE(*lineno + 1);
        if (p - *lsp >= 9 && !memcmp(p - 9, "core dumped", 11)) DECLINE(*lineno + 1);
        break;
    default: break;
    }
    return LS_OK;
}

/* The block loop over whole lines buf[0:end) (end just past a newline); W bytes a block, HITS the block test. */
#define SCAN_BLOCKS(W, MASK_T, HITS)                                                                       \
    const char *ls = buf;                                                                                  \
    linefl_t f = {0};                                                                                      \
    char pad[(W) + 1];                                                                                     \
    for (const char *b = buf; b < end; b += (W)) {                                                         \
        MASK_T bits;                                                                                       \
        if (end - b >= (W) + 1) {                                                                          \
            bits = HITS(b);                                                                                \
        } else { /* the last block: the rest of the text and a pad that matches nothing */                \
            memset(pad, 'x', sizeof pad);                                                                  \
            memcpy(pad, b, (size_t)(end - b));                                                             \
            bits = HITS(pad) & (end - b >= (W) ? (MASK_T)~(MASK_T)0 : (MASK_T)(((MASK_T)1 << (end - b)) - 1)); \
        }                                                                                                  \
        while (bits) {                                                                                     \
            const char *p = b + __builtin_ctz(bits);                                                       \
            bits &= bits - 1;                                                                              \
            int r = hit(c, p, &ls, &f, end, lineno, max_line);                                             \
            if (r) return r;                                                                               \
        }                                                                                                  \
    }                                                                                                      \
    return LS_OK;

static int scan16(ctx_t *c, const char *buf, const char *end, int64_t *lineno, int64_t max_line) {
    SCAN_BLOCKS(16, unsigned, hits16)
}

#if defined(__x86_64__) && defined(__GNUC__)
#define HAVE_AVX2_PATH 1
__attribute__((target("avx2"))) static inline unsigned hits32(const char *p) {
    __m256i v = _mm256_loadu_si256((const __m256i *)p);
    __m256i w = _mm256_loadu_si256((const __m256i *)(p + 1));
    __m256i m = _mm256_cmpgt_epi8(_mm256_set1_epi8(0x20), v);  /* signed: < 0x20 and >= 0x80 */
    m = _mm256_or_si256(m, _mm256_and_si256(_mm256_cmpeq_epi8(v, _mm256_set1_epi8('I')),
                                            _mm256_cmpeq_epi8(w, _mm256_set1_epi8('t'))));
    m = _mm256_or_si256(m, _mm256_cmpeq_epi8(v, _mm256_set1_epi8('#')));
    m = _mm256_or_si256(m, _mm256_cmpeq_epi8(v, _mm256_set1_epi8('S')));
    m = _mm256_or_si256(m, _mm256_and_si256(_mm256_cmpeq_epi8(v, _mm256_set1_epi8('s')),
                                            _mm256_cmpeq_epi8(w, _mm256_set1_epi8(':'))));
    m = _mm256_or_si256(m, _mm256_cmpeq_epi8(v, _mm256_set1_epi8('C')));
    m = _mm256_or_si256(m, _mm256_and_si256(_mm256_cmpeq_epi8(v, _mm256_set1_epi8('*')),
                                            _mm256_cmpeq_epi8(w, _mm256_set1_epi8('*'))));
    m = _mm256_or_si256(m, _mm256_cmpeq_epi8(v, _mm256_set1_epi8('f')));
    m = _mm256_or_si256(m, _mm256_and_si256(_mm256_cmpeq_epi8(v, _mm256_set1_epi8('e')),
                                            _mm256_cmpeq_epi8(w, _mm256_set1_epi8('d'))));
    return (unsigned)_mm256_movemask_epi8(m);
}

__attribute__((target("avx2"))) static int scan32(ctx_t *c, const char *buf, const char *end, int64_t *lineno,
                                                  int64_t max_line) {
    SCAN_BLOCKS(32, unsigned, hits32)
}
#endif

static int use_avx2 = -1;

/* Tables and CPU features once, when the library is loaded (not racing in threads that scan at once). */
__attribute__((constructor)) static void ls_init(void) {
    init_cls();
#ifdef HAVE_AVX2_PATH
    const char *env = getenv("CAFFEGEN_LOGSCAN_NO_AVX2");
    use_avx2 = __builtin_cpu_supports("avx2") && !(env && *env);
#else
    use_avx2 = 0;
#endif
#ifdef __GLIBC__
    c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
#endif
}

/* Which block scan runs: mode 0 the 16-byte one, 1 the 32-byte AVX2 one where the CPU has it, -1 leave it; the
 * answer is the one in use (tests run both). */
int ls_simd(int64_t mode) {
#ifdef HAVE_AVX2_PATH
    if (mode >= 0) use_avx2 = mode == 1 && __builtin_cpu_supports("avx2");
    return use_avx2 > 0;
#else
    (void)mode;
    return 0;
#endif
}

/* Scan the whole lines buf[0:end) (end just past a newline), continuing the line count in *lineno: the same
 * hits 16 or (where the CPU has AVX2) 32 bytes at a time. */
static int scan_lines(ctx_t *c, const char *buf, const char *end, int64_t *lineno, int64_t max_line) {
#ifdef HAVE_AVX2_PATH
    if (use_avx2 > 0) return scan32(c, buf, end, lineno, max_line);
#endif
    return scan16(c, buf, end, lineno, max_line);
}

static int finish(ctx_t *c) {
    if (!c->nheads) DECLINE(0);
    if (c->t[0].n == 0 && c->nloss) DECLINE(0);  /* loss lines only (very old Caffe): the per-line path */
    for (int k = 0; k < 2; k++) {  /* the first row's unknown LearningRate is taken from the second row */
        table_t *t = &c->t[k];
        if (t->n > 1 && isnan(t->lr[0])) {
            t->lr[0] = t->lr[1]; t->lroff[0] = t->lroff[1]; t->lrlen[0] = t->lrlen[1];
        }
    }
    return LS_OK;
}

static void start(ctx_t *c, int64_t year) {
    c->year = year;
    c->iteration = c->max_iter = -1;
    c->lr = NAN;
}

/* Read the file at path to its end in blocks (memory: one block, not the file) and scan its whole lines.
 * out[0]: bytes read, out[1]: offset just past the last newline (the rest is the unterminated last line,
 * which the caller reads back from the file). 0: the tables are built; else declined (or 3: cannot read). */
int ls_scan_file(void *vc, const char *path, int64_t year, int64_t max_line, int64_t *out) {
    ctx_t *c = vc;
    start(c, year);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 3;
#ifdef POSIX_FADV_SEQUENTIAL
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
    size_t cap = 256u << 10;  /* small enough to stay in the cache between read() and the scan; grows for a long line */
    char *buf = malloc(cap);
    if (!buf) { close(fd); return LS_NOMEM; }
    size_t have = 0;  /* bytes in buf: an unterminated line carried over, then what was read */
    int64_t total = 0, lineno = 0;
    int r = LS_OK;
    for (;;) {
        ssize_t got = read(fd, buf + have, cap - have);
        if (got < 0) { if (errno == EINTR) continue; r = 3; break; }
        if (got == 0) break;
        have += (size_t)got;
        total += got;
        char *nl = memrchr(buf, '\n', have);
        if (!nl) {
            if ((int64_t)have >= max_line) { r = LS_DECLINE; c->decline_line = lineno + 1; break; }
            if (have == cap) {  /* one line fills the block: a bigger block */
                char *q = realloc(buf, cap * 2);
                if (!q) { r = LS_NOMEM; break; }
                buf = q;
                cap *= 2;
            }
            continue;
        }
        size_t whole = (size_t)(nl - buf) + 1;
        r = scan_lines(c, buf, buf + whole, &lineno, max_line);
        if (r) break;
        memmove(buf, buf + whole, have - whole);
        have -= whole;
        if ((int64_t)have >= max_line) { r = LS_DECLINE; c->decline_line = lineno + 1; break; }
    }
    free(buf);
    close(fd);
    out[0] = total;
    out[1] = total - (int64_t)have;
    if (r) return r;
    if (total == (int64_t)have) DECLINE(0);  /* no newline at all */
    return finish(c);
}

/* ------------------------------------------------------------------------------------------ read back */
int64_t ls_decline_line(void *vc) { return ((ctx_t *)vc)->decline_line; }

/* out: train rows, test rows, train cols, test cols, segment, max_iter, has_start, start_us, max_month,
 * nonfinite, nloss; dout: first_loss, last_loss */
void ls_info(void *vc, int64_t *out, double *dout) {
    ctx_t *c = vc;
    out[0] = c->t[0].n; out[1] = c->t[1].n; out[2] = c->t[0].ncols; out[3] = c->t[1].ncols;
    out[4] = c->segment; out[5] = c->max_iter; out[6] = c->has_start; out[7] = c->start_us;
    out[8] = c->max_month; out[9] = c->nonfinite; out[10] = c->nloss;
    dout[0] = c->first_loss; dout[1] = c->last_loss;
}

const char *ls_colname(void *vc, int64_t t, int64_t k) { return ((ctx_t *)vc)->t[t].cols[k].name; }

void ls_loss(void *vc, int64_t *its, double *vals) {
    ctx_t *c = vc;
    if (c->nloss) {
        memcpy(its, c->loss_it, (size_t)c->nloss * sizeof(int64_t));
        memcpy(vals, c->loss_v, (size_t)c->nloss * sizeof(double));
    }
}

/* which: 0 NumIters, 1 Segment */
void ls_fetch_int(void *vc, int64_t t, int64_t which, int64_t *out) {
    table_t *tb = &((ctx_t *)vc)->t[t];
    if (tb->n) memcpy(out, which ? tb->seg : tb->it, (size_t)tb->n * sizeof(int64_t));
}

/* k: -2 Seconds, -1 LearningRate, >= 0 a net-output column */
void ls_fetch_float(void *vc, int64_t t, int64_t k, double *out, uint8_t *present) {
    table_t *tb = &((ctx_t *)vc)->t[t];
    for (int64_t i = 0; i < tb->n; i++) {
        if (k == -2) { out[i] = (double)tb->secus[i] / 1e6; present[i] = 1; }
        else if (k == -1) { out[i] = tb->lr[i]; present[i] = 1; }
        else { out[i] = tb->cols[k].val[i]; present[i] = tb->cols[k].present[i]; }
    }
}

/* Table._final_best of column k: has_last, last, has_best, best, best iteration (first row reaching it). */
void ls_final_best(void *vc, int64_t t, int64_t k, int64_t lower, int64_t *flags, double *vals, int64_t *at) {
    table_t *tb = &((ctx_t *)vc)->t[t];
    col_t *col = &tb->cols[k];
    flags[0] = flags[1] = 0;
    for (int64_t i = 0; i < tb->n; i++) {
        if (!col->present[i]) continue;
        double v = col->val[i];
        flags[0] = 1; vals[0] = v;
        if (!isfinite(v)) continue;
        if (!flags[1] || (lower ? v < vals[1] : v > vals[1])) { flags[1] = 1; vals[1] = v; *at = tb->it[i]; }
    }
}

/* ------------------------------------------------------------------------------------------- writing */
typedef struct { char *p; size_t n, cap; } obuf;

static int ob_reserve(obuf *o, size_t more) {
    if (o->n + more <= o->cap) return 1;
    size_t cap = o->cap ? o->cap * 2 : (1 << 20);
    while (cap < o->n + more) cap *= 2;
    char *q = realloc(o->p, cap);
    if (!q) return 0;
    o->p = q; o->cap = cap;
    return 1;
}

static char *put_int(char *o, int64_t v) {
    char tmp[24];
    int k = 0;
    uint64_t u = v < 0 ? (uint64_t)(-(v + 1)) + 1 : (uint64_t)v;
    if (v < 0) *o++ = '-';
    do { tmp[k++] = (char)('0' + u % 10); u /= 10; } while (u);
    while (k) *o++ = tmp[--k];
    return o;
}

/* microseconds as seconds, exactly: reads back as (double)us / 1e6 */
static char *put_secs(char *o, int64_t us) {
    if (us < 0) { *o++ = '-'; us = -us; }
    o = put_int(o, us / 1000000);
    *o++ = '.';
    int64_t f = us % 1000000;
    if (!f) { *o++ = '0'; return o; }
    char d[6];
    for (int i = 5; i >= 0; i--) { d[i] = (char)('0' + f % 10); f /= 10; }
    int n = 6;
    while (d[n - 1] == '0') n--;
    memcpy(o, d, (size_t)n);
    return o + n;
}

static char *put_text(char *o, const char *s, size_t n, int json) {
    if (json && (s[0] == 'n' || s[0] == 'i' || (s[0] == '-' && s[1] == 'i'))) {
        *o++ = '"'; memcpy(o, s, n); o += n; *o++ = '"';
        return o;
    }
    memcpy(o, s, n);
    return o + n;
}

/* The rows of table t as CSV lines ("\r\n", missing cells empty) or as JSON arrays (",\n" between rows,
 * nonfinite as strings, missing as null), appended to the file at path. */
int ls_write(void *vc, int64_t t, int64_t json, const char *path) {
    ctx_t *c = vc;
    table_t *tb = &c->t[t];
    int seg = c->segment > 0, bad = 0;
    FILE *fh = fopen(path, "ab");
    if (!fh) return 3;
    obuf o = {0};
    size_t per_row = 80 + 3 + (size_t)tb->ncols * 260;
    for (int64_t i = 0; i < tb->n && !bad; i++) {
        if (!ob_reserve(&o, per_row)) { bad = LS_NOMEM; break; }
        char *w = o.p + o.n;
        if (json) *w++ = '[';
        w = put_int(w, tb->it[i]);
        *w++ = ',';
        w = put_secs(w, tb->secus[i]);
        *w++ = ',';
        if (tb->lrlen[i]) w = put_text(w, c->arena + tb->lroff[i], tb->lrlen[i], (int)json);
        else w = put_text(w, "nan", 3, (int)json);
        for (int k = 0; k < tb->ncols; k++) {
            col_t *col = &tb->cols[k];
            *w++ = ',';
            if (col->present[i]) w = put_text(w, c->arena + col->toff[i], col->tlen[i], (int)json);
            else if (json) { memcpy(w, "null", 4); w += 4; }
        }
        if (seg) { *w++ = ','; w = put_int(w, tb->seg[i]); }
        if (json) { *w++ = ']'; if (i + 1 < tb->n) *w++ = ','; *w++ = '\n'; }
        else { *w++ = '\r'; *w++ = '\n'; }
        o.n = (size_t)(w - o.p);
        if (o.n >= (1u << 20)) {  /* write in 1 MB pieces: memory stays small */
            if (fwrite(o.p, 1, o.n, fh) != o.n) bad = 3;
            o.n = 0;
        }
    }
    if (!bad && o.n && fwrite(o.p, 1, o.n, fh) != o.n) bad = 3;
    if (fclose(fh) != 0 && !bad) bad = 3;
    free(o.p);
    return bad;
}

/* The number reader on its own (tests compare it with Python's float()): 1 and *v, or 0 outside the grammar. */
int ls_parse_num(const char *s, int64_t n, double *v) {
    int flags;
    return n >= 0 && parse_num(s, (size_t)n, v, &flags);
}
