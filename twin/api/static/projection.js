// lon/lat (CGCS2000) <-> grid metres with the polynomials the twin fitted (/api/basemap/projection).
// Over a district the fit is good to well under a millimetre (max_error_m), so the page needs no
// projection library.

const up = [1, 0, 0, 0, 0, 0];
const vp = [1, 0, 0, 0, 0, 0];

// sum of coefs[k] * u**i * v**j over terms[k] = [i, j] (degree 5 at most)
function evaluate(coefs, terms, u, v) {
  for (let n = 1; n < up.length; n++) {
    up[n] = up[n - 1] * u;
    vp[n] = vp[n - 1] * v;
  }
  let sum = 0;
  for (let k = 0; k < terms.length; k++) sum += coefs[k] * up[terms[k][0]] * vp[terms[k][1]];
  return sum;
}

export class Projection {
  constructor(fit) {
    this.fit = fit;
  }

  toXY(lon, lat) {
    const f = this.fit;
    const du = lon - f.lon0;
    const dv = lat - f.lat0;
    return [f.x0 + evaluate(f.cx, f.terms, du, dv), f.y0 + evaluate(f.cy, f.terms, du, dv)];
  }

  toLonLat(x, y) {
    const f = this.fit;
    const dx = (x - f.x0) / f.inverse_scale_m;
    const dy = (y - f.y0) / f.inverse_scale_m;
    return [f.lon0 + evaluate(f.clon, f.terms, dx, dy), f.lat0 + evaluate(f.clat, f.terms, dx, dy)];
  }
}
