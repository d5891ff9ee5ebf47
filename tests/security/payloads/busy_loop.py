import time

started = last = time.monotonic()
print("spinning", flush=True)
while True:
    if time.monotonic() - last > 2:
        last = time.monotonic()
        print(f"still spinning after {last - started:.0f} s", flush=True)
