// The one DOM helper the page modules share: an element with a class and a text (textContent, never HTML).

export function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = text;
  return e;
}
