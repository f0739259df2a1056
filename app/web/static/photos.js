/* Shrink photos on the phone before they are queued: a 12 MP photo costs a few hundred KB.
 *
 * The photo is decoded upright (EXIF orientation applied), drawn at most 2016 px on its
 * long edge and re-encoded as JPEG, lowering the quality until it fits the byte budget.
 * Re-encoding also drops EXIF, so the GPS position of the camera never leaves the phone
 * in the file. A photo the browser cannot decode (HEIC on some phones) is sent as it is:
 * the server runs its own pipeline on every photo anyway.
 */
(function (global) {
  'use strict';

  const MAX_EDGE = 2016;
  const MAX_BYTES = 580 * 1024;
  const QUALITIES = [0.85, 0.75, 0.65, 0.55, 0.45, 0.35];
  const PREVIEW_EDGE = 160;

  function fit(width, height, edge) {
    const scale = Math.min(1, edge / Math.max(width, height));
    return [Math.max(1, Math.round(width * scale)), Math.max(1, Math.round(height * scale))];
  }

  function canvas(width, height) {
    if (typeof OffscreenCanvas === 'function') return new OffscreenCanvas(width, height);
    const c = document.createElement('canvas');
    c.width = width;
    c.height = height;
    return c;
  }

  function encode(c, quality) {
    if (c.convertToBlob) return c.convertToBlob({ type: 'image/jpeg', quality });
    return new Promise((resolve) => c.toBlob(resolve, 'image/jpeg', quality));
  }

  function draw(bitmap, width, height) {
    const c = canvas(width, height);
    const ctx = c.getContext('2d');
    ctx.imageSmoothingEnabled = true;
    ctx.imageSmoothingQuality = 'high';
    ctx.drawImage(bitmap, 0, 0, width, height);
    return c;
  }

  /* A small data: URL for the on-screen list (allowed by the page's img-src). */
  function preview(bitmap) {
    const [w, h] = fit(bitmap.width, bitmap.height, PREVIEW_EDGE);
    const c = document.createElement('canvas');
    c.width = w;
    c.height = h;
    c.getContext('2d').drawImage(bitmap, 0, 0, w, h);
    return c.toDataURL('image/jpeg', 0.7);
  }

  function jpegName(name) {
    const stem = (name || 'photo').replace(/\.[^.]*$/, '').slice(0, 80) || 'photo';
    return stem + '.jpg';
  }

  /* Return {blob, name, width, height, preview, shrunk} for one File. */
  async function shrink(file) {
    let bitmap;
    try {
      bitmap = await createImageBitmap(file, { imageOrientation: 'from-image' });
    } catch (e) {
      return { blob: file, name: file.name || 'photo', width: null, height: null, preview: null, shrunk: false };
    }
    try {
      const [width, height] = fit(bitmap.width, bitmap.height, MAX_EDGE);
      const c = draw(bitmap, width, height);
      let blob = null;
      for (const quality of QUALITIES) {
        blob = await encode(c, quality);
        if (blob.size <= MAX_BYTES) break;
      }
      return { blob, name: jpegName(file.name), width, height, preview: preview(bitmap), shrunk: true };
    } finally {
      bitmap.close();
    }
  }

  global.TiplinePhotos = { shrink, MAX_EDGE, MAX_BYTES };
})(self);
