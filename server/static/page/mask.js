// The mask of a cut-out, drawn from its alpha channel in a canvas: white where the
// subject is, black where the background was. No second model run is needed.

export async function maskFromAlpha(blob) {
  // No colour conversion and no premultiplication: the alpha is read back as sent.
  const bitmap = await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  const canvas = document.createElement("canvas");
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.drawImage(bitmap, 0, 0);
  bitmap.close();
  const image = context.getImageData(0, 0, canvas.width, canvas.height);
  const pixels = image.data;
  for (let i = 0; i < pixels.length; i += 4) {
    const alpha = pixels[i + 3];
    pixels[i] = alpha;
    pixels[i + 1] = alpha;
    pixels[i + 2] = alpha;
    pixels[i + 3] = 255;
  }
  context.putImageData(image, 0, 0);
  return new Promise((resolve, reject) => {
    canvas.toBlob((mask) => (mask ? resolve(mask) : reject(new Error("the mask could not be drawn"))), "image/png");
  });
}
