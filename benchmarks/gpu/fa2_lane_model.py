"""Lane-level model of the FA2 attention kernels in cuda-kernels/attention.cu (forward, dQ, dK/dV), for reviewing
their index arithmetic without a GPU: swizzled shared-memory tiles, the cp.async tile copies, ldmatrix(.trans) x4 and
mma.m16n8k16 with the PTX fragment layouts, online softmax and masks, transcribed from the CUDA source index by index
(the next stage is refilled before the current tile is computed, so reading the wrong stage gives wrong results; shared
memory starts as NaN, so reading an unwritten element fails). Compared with a float64 reference; expect bf16-level errors
(~2e-3). Run: python3 fa2_lane_model.py [bwd] [ks32]  (numpy, seconds). Keep it in step with attention.cu when the kernels change."""
import numpy as np
import sys

KS64 = "ks32" not in sys.argv   # MT_ATTN_FWD_KS64 (argument ks32 models the 32-key variant)
LOG2E = 1.4426950408889634
LN2 = 0.6931471805599453

def bf16(x):
    x = np.asarray(x, dtype=np.float32)
    b = x.view(np.uint32).astype(np.uint64)
    b = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) << 16
    return b.astype(np.uint32).view(np.float32)

LANE = np.arange(32)
G = LANE >> 2
TIG = LANE & 3

class Smem:
    def __init__(self, nbytes):
        self.a = np.full(nbytes // 2, np.nan, dtype=np.float32)   # bf16 elements (NaN = never written)
        self.f = {}                                               # float regions by byte offset
    def ld_row8(self, byte_addr):
        assert byte_addr % 16 == 0, byte_addr
        e = byte_addr // 2
        return self.a[e:e + 8]

def ldsm_x4(sm, addrs, trans=False):
    """addrs[32] byte addresses; returns regs[4][32][2] (low, high halves)."""
    out = np.zeros((4, 32, 2), dtype=np.float32)
    for i in range(4):
        M = np.stack([sm.ld_row8(int(addrs[8 * i + r])) for r in range(8)])   # 8x8, row r from lane 8i+r
        for l in range(32):
            if not trans:
                out[i, l] = M[l // 4, 2 * (l % 4):2 * (l % 4) + 2]
            else:
                out[i, l] = [M[2 * (l % 4), l // 4], M[2 * (l % 4) + 1, l // 4]]
    return out

def mma(c, a, b0, b1):
    """c[32][4] += A(16x16) B(16x8). a[4][32][2], b0/b1 [32][2]."""
    A = np.zeros((16, 16)); Bm = np.zeros((16, 8))
    for l in range(32):
        g, t = l >> 2, l & 3
        A[g, 2 * t:2 * t + 2] = a[0][l]; A[g + 8, 2 * t:2 * t + 2] = a[1][l]
        A[g, 2 * t + 8:2 * t + 10] = a[2][l]; A[g + 8, 2 * t + 8:2 * t + 10] = a[3][l]
        Bm[2 * t:2 * t + 2, g] = b0[l]; Bm[2 * t + 8:2 * t + 10, g] = b1[l]
    assert not np.isnan(A).any() and not np.isnan(Bm).any(), "mma operand read unwritten shared memory"
    Cm = A @ Bm
    for l in range(32):
        g, t = l >> 2, l & 3
        c[l, 0] += Cm[g, 2 * t]; c[l, 1] += Cm[g, 2 * t + 1]; c[l, 2] += Cm[g + 8, 2 * t]; c[l, 3] += Cm[g + 8, 2 * t + 1]

def pack(lo, hi):
    return np.stack([bf16(lo), bf16(hi)], axis=-1)   # [32][2]

def swz(HD, row, chunk):
    return row * HD + ((chunk ^ (row & 7)) << 3)

def swlane(x, lane):
    c = (x << 4) ^ ((lane & 7) << 4)
    return [((i * 32) ^ c) for i in range(4)]

def at(sw, k):
    return sw[k & 3] + (k >> 2) * 128

def tile_async(sm, HD, ROWS, THREADS, tile_elem, src, base_index, rstride, row0, T):
    """src: flat array; base_index: element index of position 0 of the head."""
    NCH = HD // 8; RSTEP = THREADS // NCH
    for tid in range(THREADS):
        r, ch = tid // NCH, tid % NCH
        p = base_index + (row0 + r) * rstride + ch * 8
        dst = tile_elem + swz(HD, r, ch)
        for k in range(ROWS // RSTEP):
            valid = row0 + r + k * RSTEP < T
            d = dst + k * RSTEP * HD
            sm.a[d:d + 8] = src[p:p + 8] if valid else 0.0
            p += RSTEP * rstride

def exp2(x):
    with np.errstate(invalid='ignore', over='ignore'):
        return np.exp2(x)

# ------------------------------------------------------------------------------------------------ forward
def fwd(qkv, B, T, NH, NKV, HD):
    BM, BN = 128, 64
    KS = 64 if (KS64 or HD <= 64) else 32    # MtFa2Fwd::KS (MT_ATTN_FWD_KS64)
    NT, DT, KC = KS // 8, HD // 8, HD // 16
    RB = HD * 2
    rs = (NH + 2 * NKV) * HD
    scale_log2 = np.float32(1.0 / np.sqrt(HD) * LOG2E)
    out = np.full(B * T * NH * HD, np.nan, dtype=np.float32)
    lse = np.full(B * NH * T, np.nan, dtype=np.float32)
    numQT = (T + BM - 1) // BM
    for bid in range(numQT * B * NH):
        BNH = B * NH
        qt = numQT - 1 - bid // BNH; bh = bid % BNH; h = bh % NH; b = bh // NH; kh = h // (NH // NKV)
        qb = b * T * rs + h * HD; kb_ = b * T * rs + (NH + kh) * HD; vb_ = kb_ + NKV * HD
        q0 = qt * BM
        sm = Smem((BM + 4 * BN) * HD * 2)
        Qs, Ks, Vs = 0, BM * HD, BM * HD + 2 * BN * HD
        nkt = min(T - 1, q0 + BM - 1) // BN + 1
        tile_async(sm, HD, BM, 128, Qs, qkv, qb, rs, q0, T)
        tile_async(sm, HD, BN, 128, Ks, qkv, kb_, rs, 0, T)
        tile_async(sm, HD, BN, 128, Vs, qkv, vb_, rs, 0, T)
        # warps run one after another per tile (the barrier semantics): state per warp
        st = {}
        for warp in range(4):
            st[warp] = dict(o=np.zeros((2, DT, 32, 4)), m=np.full((2, 2, 32), -np.inf, dtype=np.float32), l=np.zeros((2, 2, 32), dtype=np.float32))
        for kt in range(nkt):
            # barrier; then the prefetch of kt+1 into the other stage (modelled after all warps of kt: it may
            # only overwrite the stage read in kt-1, which the model checks by poisoning it now)
            if kt + 1 < nkt:
                s_ = (kt + 1) & 1
                sm.a[Ks + s_ * BN * HD: Ks + (s_ + 1) * BN * HD] = np.nan
                sm.a[Vs + s_ * BN * HD: Vs + (s_ + 1) * BN * HD] = np.nan
                tile_async(sm, HD, BN, 128, Ks + s_ * BN * HD, qkv, kb_, rs, (kt + 1) * BN, T)
                tile_async(sm, HD, BN, 128, Vs + s_ * BN * HD, qkv, vb_, rs, (kt + 1) * BN, T)
            for warp in range(4):
                S_ = st[warp]
                wr = warp * 32; wrow0 = q0 + wr
                swA = swlane(LANE >> 4, LANE)
                q_lds = Qs * 2 + (wr + (LANE & 15)) * RB
                k_lane = Ks * 2 + (LANE & 15) * RB
                v_lane = k_lane + 2 * BN * RB
                k_lds = k_lane + (kt & 1) * BN * RB
                v_lds = v_lane + (kt & 1) * BN * RB
                for sub in range(BN // KS):
                    k0 = kt * BN + sub * KS
                    if k0 > wrow0 + 31:
                        break
                    s = np.zeros((2, NT, 32, 4))
                    swc0 = ((LANE >> 4) ^ (LANE & 7)) << 4
                    for kc in range(KC):
                        swc = (kc << 5) ^ swc0
                        qa = [ldsm_x4(sm, q_lds + mt * 16 * RB + swc) for mt in range(2)]
                        for jp in range(NT // 2):
                            kb = ldsm_x4(sm, k_lds + (sub * KS + jp * 16) * RB + swc)
                            for mt in range(2):
                                mma(s[mt, 2 * jp], qa[mt], kb[0], kb[2])
                                mma(s[mt, 2 * jp + 1], qa[mt], kb[1], kb[3])
                    s = s.astype(np.float32)
                    if k0 + KS - 1 > wrow0:
                        diag = wrow0 + G - k0 - 2 * TIG
                        for mt in range(2):
                            for j in range(NT):
                                for e in range(4):
                                    s[mt, j, :, e] = np.where(j * 8 + (e & 1) - mt * 16 - ((e >> 1) << 3) > diag, -np.inf, s[mt, j, :, e])
                    corr = np.zeros((2, 2, 32), dtype=np.float32)
                    for mt in range(2):
                        mx = [S_['m'][mt, 0].copy(), S_['m'][mt, 1].copy()]
                        for j in range(NT):
                            mx[0] = np.fmax(mx[0], np.fmax(s[mt, j, :, 0], s[mt, j, :, 1]))
                            mx[1] = np.fmax(mx[1], np.fmax(s[mt, j, :, 2], s[mt, j, :, 3]))
                        msub = [None, None]
                        for i in range(2):
                            mx[i] = np.fmax(mx[i], mx[i][LANE ^ 1]); mx[i] = np.fmax(mx[i], mx[i][LANE ^ 2])
                            msub[i] = np.where(mx[i] == -np.inf, 0.0, mx[i] * scale_log2).astype(np.float32)
                            corr[mt, i] = exp2(S_['m'][mt, i] * scale_log2 - msub[i])
                            S_['m'][mt, i] = mx[i]
                        rsum = [0.0, 0.0]
                        for j in range(NT):
                            for e in range(4):
                                s[mt, j, :, e] = exp2(s[mt, j, :, e] * scale_log2 - msub[e >> 1])
                            rsum[0] = rsum[0] + s[mt, j, :, 0] + s[mt, j, :, 1]
                            rsum[1] = rsum[1] + s[mt, j, :, 2] + s[mt, j, :, 3]
                        S_['l'][mt, 0] = S_['l'][mt, 0] * corr[mt, 0] + rsum[0]
                        S_['l'][mt, 1] = S_['l'][mt, 1] * corr[mt, 1] + rsum[1]
                    for mt in range(2):
                        for d in range(DT):
                            S_['o'][mt, d, :, 0] *= corr[mt, 0]; S_['o'][mt, d, :, 1] *= corr[mt, 0]
                            S_['o'][mt, d, :, 2] *= corr[mt, 1]; S_['o'][mt, d, :, 3] *= corr[mt, 1]
                    for kk in range(KS // 16):
                        pa = [np.stack([pack(s[mt, 2 * kk, :, 0], s[mt, 2 * kk, :, 1]), pack(s[mt, 2 * kk, :, 2], s[mt, 2 * kk, :, 3]),
                                        pack(s[mt, 2 * kk + 1, :, 0], s[mt, 2 * kk + 1, :, 1]), pack(s[mt, 2 * kk + 1, :, 2], s[mt, 2 * kk + 1, :, 3])])
                              for mt in range(2)]
                        for dp in range(DT // 2):
                            vb = ldsm_x4(sm, v_lds + (sub * KS + kk * 16) * RB + at(swA, dp), trans=True)
                            for mt in range(2):
                                mma(S_['o'][mt, 2 * dp], pa[mt], vb[0], vb[1])
                                mma(S_['o'][mt, 2 * dp + 1], pa[mt], vb[2], vb[3])
        # epilogue
        for warp in range(4):
            S_ = st[warp]; wr = warp * 32; wrow0 = q0 + wr
            for mt in range(2):
                for i in range(2):
                    l_ = S_['l'][mt, i]
                    l_ = l_ + l_[LANE ^ 1]; l_ = l_ + l_[LANE ^ 2]
                    S_['l'][mt, i] = l_
                    row = wrow0 + mt * 16 + G + 8 * i
                    for ln in range(32):
                        if TIG[ln] == 0 and row[ln] < T:
                            lse[(b * NH + h) * T + row[ln]] = (S_['m'][mt, i][ln] * scale_log2 + np.log2(l_[ln])) * LN2
                inv0 = 1.0 / S_['l'][mt, 0]; inv1 = 1.0 / S_['l'][mt, 1]
                r0 = wr + mt * 16 + G
                for d in range(DT):
                    for ln in range(32):
                        e = Qs + swz(HD, r0[ln], d) + 2 * TIG[ln]
                        sm.a[e:e + 2] = bf16(S_['o'][mt, d, ln, 0:2] * inv0[ln])
                        e = Qs + swz(HD, r0[ln] + 8, d) + 2 * TIG[ln]
                        sm.a[e:e + 2] = bf16(S_['o'][mt, d, ln, 2:4] * inv1[ln])
            for c in range(32 * DT):
                r, ch = c // DT, c % DT
                row = wrow0 + r
                if row < T:
                    o = ((b * T + row) * NH + h) * HD + ch * 8
                    out[o:o + 8] = sm.ld_row8((Qs + swz(HD, wr + r, ch)) * 2)
    return out, lse

def ref_fwd(qkv, B, T, NH, NKV, HD):
    x = qkv.reshape(B, T, NH + 2 * NKV, HD).astype(np.float64)
    out = np.zeros((B, T, NH, HD)); lse = np.zeros((B, NH, T))
    for b in range(B):
        for h in range(NH):
            kh = h // (NH // NKV)
            q, k, v = x[b, :, h], x[b, :, NH + kh], x[b, :, NH + NKV + kh]
            s = q @ k.T / np.sqrt(HD)
            s[np.triu(np.ones((T, T), bool), 1)] = -np.inf
            m = s.max(1, keepdims=True)
            p = np.exp(s - m)
            l = p.sum(1, keepdims=True)
            out[b, :, h] = (p / l) @ v
            lse[b, h] = (m + np.log(l))[:, 0]
    return out.reshape(-1), lse.reshape(-1)

def rel(a, b):
    assert not np.isnan(a).any(), "NaN (unwritten output)"
    return np.linalg.norm(a - b) / np.linalg.norm(b)

if __name__ == "__main__":
    rng = np.random.default_rng(0)
    cases = [(1, 200, 2, 1, 64), (1, 130, 2, 2, 128), (2, 70, 2, 1, 128)]
    for (B, T, NH, NKV, HD) in cases:
        qkv = bf16(rng.standard_normal(B * T * (NH + 2 * NKV) * HD).astype(np.float32))
        o, l = fwd(qkv, B, T, NH, NKV, HD)
        ro, rl = ref_fwd(qkv, B, T, NH, NKV, HD)
        print(f"fwd B{B} T{T} NH{NH} NKV{NKV} HD{HD}: out rel {rel(o, ro):.2e}  lse rel {rel(l, rl):.2e}", flush=True)

# ------------------------------------------------------------------------------------------------ backward
def ref_bwd(qkv, dout, B, T, NH, NKV, HD):
    x = qkv.reshape(B, T, NH + 2 * NKV, HD).astype(np.float64)
    do = dout.reshape(B, T, NH, HD).astype(np.float64)
    dx = np.zeros_like(x)
    for b in range(B):
        for h in range(NH):
            kh = h // (NH // NKV)
            q, k, v = x[b, :, h], x[b, :, NH + kh], x[b, :, NH + NKV + kh]
            s = q @ k.T / np.sqrt(HD)
            s[np.triu(np.ones((T, T), bool), 1)] = -np.inf
            p = np.exp(s - s.max(1, keepdims=True)); p /= p.sum(1, keepdims=True)
            o = p @ v
            D = (do[b, :, h] * o).sum(1, keepdims=True)
            dp = do[b, :, h] @ v.T
            ds = p * (dp - D)
            dx[b, :, h] += ds @ k / np.sqrt(HD)
            dx[b, :, NH + kh] += ds.T @ q / np.sqrt(HD)
            dx[b, :, NH + NKV + kh] += p.T @ do[b, :, h]
    return dx.reshape(-1)

def bwd_dq(dqkv, dout, qkv, lse, Dv, B, T, NH, NKV, HD):
    BM, BN = 128, 32
    NT, DT, KC = BN // 8, HD // 8, HD // 16
    RB = HD * 2
    rs = (NH + 2 * NKV) * HD; ors = NH * HD
    scale = np.float32(1.0 / np.sqrt(HD)); scale_log2 = np.float32(scale * LOG2E)
    numQT = (T + BM - 1) // BM
    for bid in range(numQT * B * NH):
        BNH = B * NH
        qt = numQT - 1 - bid // BNH; bh = bid % BNH; h = bh % NH; b = bh // NH; kh = h // (NH // NKV)
        qb = b * T * rs + h * HD; kb_ = b * T * rs + (NH + kh) * HD; vb_ = kb_ + NKV * HD; dob = b * T * ors + h * HD
        q0 = qt * BM
        sm = Smem((2 * BM + 4 * BN) * HD * 2)
        Qs, dOs, Ks = 0, BM * HD, 2 * BM * HD
        Vs = Ks + 2 * BN * HD
        nkt = min(T - 1, q0 + BM - 1) // BN + 1
        tile_async(sm, HD, BM, 128, Qs, qkv, qb, rs, q0, T)
        tile_async(sm, HD, BM, 128, dOs, dout, dob, ors, q0, T)
        tile_async(sm, HD, BN, 128, Ks, qkv, kb_, rs, 0, T)
        tile_async(sm, HD, BN, 128, Vs, qkv, vb_, rs, 0, T)
        lrow = (b * NH + h) * T
        st = {}
        for warp in range(4):
            wrow0 = q0 + warp * 32
            lse2 = np.zeros((2, 2, 32), np.float32); Dr = np.zeros((2, 2, 32), np.float32)
            for mt in range(2):
                for i in range(2):
                    row = wrow0 + mt * 16 + G + 8 * i
                    lse2[mt, i] = [lse[lrow + r] * LOG2E if r < T else np.inf for r in row]
                    Dr[mt, i] = [Dv[lrow + r] if r < T else 0.0 for r in row]
            st[warp] = dict(dq=np.zeros((2, DT, 32, 4)), lse2=lse2, Dr=Dr)
        for kt in range(nkt):
            if kt + 1 < nkt:
                s_ = (kt + 1) & 1
                sm.a[Ks + s_ * BN * HD: Ks + (s_ + 1) * BN * HD] = np.nan
                sm.a[Vs + s_ * BN * HD: Vs + (s_ + 1) * BN * HD] = np.nan
                tile_async(sm, HD, BN, 128, Ks + s_ * BN * HD, qkv, kb_, rs, (kt + 1) * BN, T)
                tile_async(sm, HD, BN, 128, Vs + s_ * BN * HD, qkv, vb_, rs, (kt + 1) * BN, T)
            k0 = kt * BN
            for warp in range(4):
                S_ = st[warp]; wr = warp * 32; wrow0 = q0 + wr
                if k0 > wrow0 + 31:
                    continue
                sw = swlane(LANE >> 4, LANE)
                q_lds = Qs * 2 + (wr + (LANE & 15)) * RB
                do_lds = q_lds + BM * RB
                k_lane = Ks * 2 + (LANE & 15) * RB
                v_lane = k_lane + 2 * BN * RB
                k_lds = k_lane + (kt & 1) * BN * RB
                v_lds = v_lane + (kt & 1) * BN * RB
                s = np.zeros((2, NT, 32, 4)); dp = np.zeros((2, NT, 32, 4))
                for kc in range(KC):
                    a = [ldsm_x4(sm, q_lds + mt * 16 * RB + at(sw, kc)) for mt in range(2)]
                    for jp in range(NT // 2):
                        kb = ldsm_x4(sm, k_lds + jp * 16 * RB + at(sw, kc))
                        for mt in range(2):
                            mma(s[mt, 2 * jp], a[mt], kb[0], kb[2]); mma(s[mt, 2 * jp + 1], a[mt], kb[1], kb[3])
                for kc in range(KC):
                    a = [ldsm_x4(sm, do_lds + mt * 16 * RB + at(sw, kc)) for mt in range(2)]
                    for jp in range(NT // 2):
                        vb = ldsm_x4(sm, v_lds + jp * 16 * RB + at(sw, kc))
                        for mt in range(2):
                            mma(dp[mt, 2 * jp], a[mt], vb[0], vb[2]); mma(dp[mt, 2 * jp + 1], a[mt], vb[1], vb[3])
                diag = k0 + BN - 1 > wrow0
                s = s.astype(np.float32)
                for mt in range(2):
                    for j in range(NT):
                        for e in range(4):
                            i = e >> 1
                            row = wrow0 + mt * 16 + G + 8 * i
                            col = k0 + j * 8 + 2 * TIG + (e & 1)
                            p = exp2(s[mt, j, :, e] * scale_log2 - S_['lse2'][mt, i])
                            if diag:
                                p = np.where(col > row, 0.0, p)
                            s[mt, j, :, e] = p * (dp[mt, j, :, e] - S_['Dr'][mt, i])
                for kk in range(BN // 16):
                    a = [np.stack([pack(s[mt, 2 * kk, :, 0], s[mt, 2 * kk, :, 1]), pack(s[mt, 2 * kk, :, 2], s[mt, 2 * kk, :, 3]),
                                   pack(s[mt, 2 * kk + 1, :, 0], s[mt, 2 * kk + 1, :, 1]), pack(s[mt, 2 * kk + 1, :, 2], s[mt, 2 * kk + 1, :, 3])])
                         for mt in range(2)]
                    for dp2 in range(DT // 2):
                        kb = ldsm_x4(sm, k_lds + kk * 16 * RB + at(sw, dp2), trans=True)
                        for mt in range(2):
                            mma(S_['dq'][mt, 2 * dp2], a[mt], kb[0], kb[1]); mma(S_['dq'][mt, 2 * dp2 + 1], a[mt], kb[2], kb[3])
        for warp in range(4):
            S_ = st[warp]; wr = warp * 32; wrow0 = q0 + wr
            for mt in range(2):
                r0 = wr + mt * 16 + G
                for d in range(DT):
                    for ln in range(32):
                        e = Qs + swz(HD, r0[ln], d) + 2 * TIG[ln]
                        sm.a[e:e + 2] = bf16(S_['dq'][mt, d, ln, 0:2] * scale)
                        e = Qs + swz(HD, r0[ln] + 8, d) + 2 * TIG[ln]
                        sm.a[e:e + 2] = bf16(S_['dq'][mt, d, ln, 2:4] * scale)
            for c in range(32 * DT):
                r, ch = c // DT, c % DT
                row = wrow0 + r
                if row < T:
                    o = qb + row * rs + ch * 8
                    dqkv[o:o + 8] = sm.ld_row8((Qs + swz(HD, wr + r, ch)) * 2)

def bwd_dkdv(dqkv, dout, qkv, lse, Dv, B, T, NH, NKV, HD):
    BK, BQ = 64, 64
    QS = 32 if HD > 64 else 64
    NT, DT, KC = QS // 8, HD // 8, HD // 16
    RB = HD * 2
    rs = (NH + 2 * NKV) * HD; ors = NH * HD
    scale = np.float32(1.0 / np.sqrt(HD)); scale_log2 = np.float32(scale * LOG2E)
    GQ = NH // NKV
    BKV = B * NKV
    for bid in range(((T + BK - 1) // BK) * BKV):
        kt = bid // BKV; bkv = bid % BKV; kh = bkv % NKV; b = bkv // NKV
        kbase = b * T * rs + (NH + kh) * HD; vbase = kbase + NKV * HD
        k0 = kt * BK
        nit = GQ * ((T - k0 + BQ - 1) // BQ)
        sm = Smem((2 * BK + 4 * BQ) * HD * 2)
        Ks, Vs, Qs = 0, BK * HD, 2 * BK * HD
        dOs = Qs + 2 * BQ * HD
        lses = [np.full(BQ, np.nan, np.float32), np.full(BQ, np.nan, np.float32)]
        Ds = [np.full(BQ, np.nan, np.float32), np.full(BQ, np.nan, np.float32)]
        def issue(h, q0, stg):
            tile_async(sm, HD, BQ, 128, Qs + stg * BQ * HD, qkv, b * T * rs + h * HD, rs, q0, T)
            tile_async(sm, HD, BQ, 128, dOs + stg * BQ * HD, dout, b * T * ors + h * HD, ors, q0, T)
            for tid in range(128):
                j = tid & (BQ - 1); valid = q0 + j < T
                src = (lse if tid < BQ else Dv)[(b * NH + h) * T + (q0 + j if valid else 0)]
                (lses if tid < BQ else Ds)[stg][j] = src if valid else 0.0
        tile_async(sm, HD, BK, 128, Ks, qkv, kbase, rs, k0, T)
        tile_async(sm, HD, BK, 128, Vs, qkv, vbase, rs, k0, T)
        issue(kh * GQ, k0, 0)
        nh, nq0 = kh * GQ, k0
        dk = {w: np.zeros((DT, 32, 4)) for w in range(4)}; dv = {w: np.zeros((DT, 32, 4)) for w in range(4)}
        for it in range(nit):
            q0 = nq0
            if it + 1 < nit:
                nq0 += BQ
                if nq0 >= T:
                    nq0 = k0; nh += 1
                s_ = (it + 1) & 1
                sm.a[Qs + s_ * BQ * HD: Qs + (s_ + 1) * BQ * HD] = np.nan
                sm.a[dOs + s_ * BQ * HD: dOs + (s_ + 1) * BQ * HD] = np.nan
                lses[s_][:] = np.nan; Ds[s_][:] = np.nan
                issue(nh, nq0, s_)
            stg = it & 1
            for warp in range(4):
                kw = k0 + warp * 16
                sw = swlane(LANE >> 4, LANE)
                k_lds = Ks * 2 + (warp * 16 + (LANE & 15)) * RB
                v_lds = k_lds + BK * RB
                q_lane = Qs * 2 + (LANE & 15) * RB
                do_lane = q_lane + 2 * BQ * RB
                q_lds = q_lane + stg * BQ * RB; do_lds = do_lane + stg * BQ * RB
                lq = lses[stg]; Dq = Ds[stg]
                for sub in range(BQ // QS):
                    qs0 = sub * QS
                    s = np.zeros((NT, 32, 4)); dp = np.zeros((NT, 32, 4))
                    for kc in range(KC):
                        ka = ldsm_x4(sm, k_lds + at(sw, kc)); va = ldsm_x4(sm, v_lds + at(sw, kc))
                        for jp in range(NT // 2):
                            qb = ldsm_x4(sm, q_lds + (qs0 + jp * 16) * RB + at(sw, kc))
                            ob = ldsm_x4(sm, do_lds + (qs0 + jp * 16) * RB + at(sw, kc))
                            mma(s[2 * jp], ka, qb[0], qb[2]); mma(s[2 * jp + 1], ka, qb[1], qb[3])
                            mma(dp[2 * jp], va, ob[0], ob[2]); mma(dp[2 * jp + 1], va, ob[1], ob[3])
                    s = s.astype(np.float32)
                    diag = q0 + qs0 < kw + 15
                    pp = np.zeros((NT, 2, 32, 2), np.float32); dsp = np.zeros((NT, 2, 32, 2), np.float32)
                    for j in range(NT):
                        qc = qs0 + j * 8 + 2 * TIG
                        l2a = lq[qc] * np.float32(LOG2E); l2b = lq[qc + 1] * np.float32(LOG2E); Da = Dq[qc]; Db = Dq[qc + 1]
                        assert not np.isnan(l2a).any() and not np.isnan(Da).any()
                        for i in range(2):
                            key = kw + G + 8 * i
                            pa = exp2(s[j, :, 2 * i] * scale_log2 - l2a)
                            pb = exp2(s[j, :, 2 * i + 1] * scale_log2 - l2b)
                            if diag:
                                pa = np.where(q0 + qc < key, 0.0, pa); pb = np.where(q0 + qc + 1 < key, 0.0, pb)
                            pp[j, i] = pack(pa, pb)
                            dsp[j, i] = pack(pa * (dp[j, :, 2 * i] - Da), pb * (dp[j, :, 2 * i + 1] - Db))
                    for kk in range(QS // 16):
                        pa = np.stack([pp[2 * kk, 0], pp[2 * kk, 1], pp[2 * kk + 1, 0], pp[2 * kk + 1, 1]])
                        sa = np.stack([dsp[2 * kk, 0], dsp[2 * kk, 1], dsp[2 * kk + 1, 0], dsp[2 * kk + 1, 1]])
                        for dp2 in range(DT // 2):
                            ob = ldsm_x4(sm, do_lds + (qs0 + kk * 16) * RB + at(sw, dp2), trans=True)
                            qb = ldsm_x4(sm, q_lds + (qs0 + kk * 16) * RB + at(sw, dp2), trans=True)
                            mma(dv[warp][2 * dp2], pa, ob[0], ob[1]); mma(dv[warp][2 * dp2 + 1], pa, ob[2], ob[3])
                            mma(dk[warp][2 * dp2], sa, qb[0], qb[1]); mma(dk[warp][2 * dp2 + 1], sa, qb[2], qb[3])
        for warp in range(4):
            kw = k0 + warp * 16
            r0 = warp * 16 + G
            for d in range(DT):
                for ln in range(32):
                    for (base, val, sc) in ((Ks, dk[warp], scale), (Vs, dv[warp], 1.0)):
                        e = base + swz(HD, r0[ln], d) + 2 * TIG[ln]
                        sm.a[e:e + 2] = bf16(val[d, ln, 0:2] * sc)
                        e = base + swz(HD, r0[ln] + 8, d) + 2 * TIG[ln]
                        sm.a[e:e + 2] = bf16(val[d, ln, 2:4] * sc)
            dkb = b * T * rs + (NH + kh) * HD; dvb = dkb + NKV * HD
            for c in range(16 * DT):
                r, ch = c // DT, c % DT
                key = kw + r
                if key < T:
                    dqkv[dkb + key * rs + ch * 8: dkb + key * rs + ch * 8 + 8] = sm.ld_row8((Ks + swz(HD, warp * 16 + r, ch)) * 2)
                    dqkv[dvb + key * rs + ch * 8: dvb + key * rs + ch * 8 + 8] = sm.ld_row8((Vs + swz(HD, warp * 16 + r, ch)) * 2)

def bwd(qkv, B, T, NH, NKV, HD, rng):
    out, lse = fwd(qkv, B, T, NH, NKV, HD)
    dout = bf16(rng.standard_normal(B * T * NH * HD).astype(np.float32))
    o = out.reshape(B, T, NH, HD); d = dout.reshape(B, T, NH, HD)
    Dv = np.zeros(B * NH * T, np.float32)
    for b in range(B):
        for h in range(NH):
            Dv[(b * NH + h) * T:(b * NH + h + 1) * T] = (o[b, :, h] * d[b, :, h]).sum(1)
    dqkv = np.full(qkv.size, np.nan, np.float32)
    bwd_dkdv(dqkv, dout, qkv, lse, Dv, B, T, NH, NKV, HD)
    bwd_dq(dqkv, dout, qkv, lse, Dv, B, T, NH, NKV, HD)
    return dqkv, ref_bwd(qkv, dout, B, T, NH, NKV, HD)

if __name__ == "__main__" and "bwd" in sys.argv:
    rng = np.random.default_rng(1)
    for (B, T, NH, NKV, HD) in [(1, 150, 2, 1, 64), (1, 100, 4, 2, 128), (2, 70, 2, 2, 128)]:
        qkv = bf16(rng.standard_normal(B * T * (NH + 2 * NKV) * HD).astype(np.float32))
        got, want = bwd(qkv, B, T, NH, NKV, HD, rng)
        g4 = got.reshape(B, T, NH + 2 * NKV, HD); w4 = want.reshape(B, T, NH + 2 * NKV, HD)
        print(f"bwd B{B} T{T} NH{NH} NKV{NKV} HD{HD}: dq {rel(g4[:, :, :NH], w4[:, :, :NH]):.2e} dk {rel(g4[:, :, NH:NH+NKV], w4[:, :, NH:NH+NKV]):.2e} "
              f"dv {rel(g4[:, :, NH+NKV:], w4[:, :, NH+NKV:]):.2e}", flush=True)
