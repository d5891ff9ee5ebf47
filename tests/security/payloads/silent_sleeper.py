import time

print("going quiet", flush=True)
time.sleep(3600)
